/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Entry points of the Rust Live Update Orchestrator (luo_rs.rs) that the C
 * glue calls, and the one the glue gives it (luo_rs_should_fail_deserialize).
 */
#ifndef _KERNEL_LIVEUPDATE_LUO_GLUE_H
#define _KERNEL_LIVEUPDATE_LUO_GLUE_H

#include <linux/types.h>

void luo_rs_set_enabled(bool on);
int luo_rs_early_init(void);
int luo_rs_late_init(void);

/* Points of the reboot path the glue marks on the timeline. */
#define LUO_RS_MARK_DEVICES	2
#define LUO_RS_MARK_JUMP	3
void luo_rs_timeline_mark(u32 point);
/* CONFIG_LIVEUPDATE_RUST_TEST only (test_handler.rs): corrupt what was written. */
void luo_rs_test_corrupt(void);
/* CONFIG_FAULT_INJECTION only: should_fail() of fail_liveupdate_deserialize. */
bool luo_rs_should_fail_deserialize(void);
u64 luo_rs_clock(void);
u32 luo_rs_clock_khz(void);
bool luo_rs_clock_is_tsc(void);

#endif /* _KERNEL_LIVEUPDATE_LUO_GLUE_H */
