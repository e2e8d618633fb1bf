/* SPDX-License-Identifier: GPL-2.0-only */
/* placeholder: xproxyd entry point, being written (issue 3). */
int main(void)
{
	return 1;
}
