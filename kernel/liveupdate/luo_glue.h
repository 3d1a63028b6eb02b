/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Entry points of the Rust Live Update Orchestrator (luo_rs.rs) that the C
 * glue calls.
 */
#ifndef _KERNEL_LIVEUPDATE_LUO_GLUE_H
#define _KERNEL_LIVEUPDATE_LUO_GLUE_H

#include <linux/types.h>

void luo_rs_set_enabled(bool on);
int luo_rs_early_init(void);
int luo_rs_late_init(void);

#endif /* _KERNEL_LIVEUPDATE_LUO_GLUE_H */
