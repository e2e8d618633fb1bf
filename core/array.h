/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * array - growing a malloc'd array in place (config and rule parsing).
 */
#ifndef XP_ARRAY_H
#define XP_ARRAY_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Make *arr (elements of sz bytes, *cap of them) hold at least `need`, doubling; the new
 * elements are zeroed. 0, or -ENOMEM (also when the size would overflow) with *arr intact. */
static inline int array_grow(void *arr, size_t *cap, size_t need, size_t sz)
{
	void **p = arr;
	size_t ncap;
	void *n;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 8;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2 / sz)
			return -ENOMEM;
		ncap *= 2;
	}
	n = realloc(*p, ncap * sz);
	if (!n)
		return -ENOMEM;
	memset((char *)n + *cap * sz, 0, (ncap - *cap) * sz);
	*p = n;
	*cap = ncap;
	return 0;
}

#endif
