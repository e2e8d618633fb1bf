/* SPDX-License-Identifier: GPL-2.0-only */
/* Refused: the entry point returns no descriptor. */
#include "fake.h"

FAKE_ENTRY(NULL)
