// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the Rust Live Update Orchestrator (luo_rs.rs): what Rust code
 * cannot declare itself, the early parameter and the initcalls.
 */

#include <linux/init.h>
#include <linux/kstrtox.h>

#include "luo_glue.h"

static int __init luo_rs_param(char *buf)
{
	bool on;
	int err = kstrtobool(buf, &on);

	if (!err)
		luo_rs_set_enabled(on);
	return err;
}
early_param("liveupdate", luo_rs_param);

early_initcall(luo_rs_early_init);
late_initcall(luo_rs_late_init);
