// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the Rust Live Update Orchestrator (luo_rs.rs): what Rust code
 * cannot declare itself, the early parameter, the initcalls and the exports.
 */

#include <linux/export.h>
#include <linux/init.h>
#include <linux/kstrtox.h>
#include <linux/liveupdate.h>

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

/*
 * The C API for loadable modules (capi.rs; the same as the C LUO exports):
 * file handlers. Unregistering one excludes every lookup that could still call
 * it, and LUO holds a reference on its module for each of its files, so the
 * module can go once the handler is unregistered and its files are gone.
 */
EXPORT_SYMBOL_GPL(liveupdate_enabled);
/* Registers a file handler, on behalf of the module of its ops (owner). */
EXPORT_SYMBOL_GPL(liveupdate_register_file_handler);
/* Once it returns, LUO calls the handler only for files that hold its module. */
EXPORT_SYMBOL_GPL(liveupdate_unregister_file_handler);
/*
 * FLBs: LUO keeps an FLB's state (keyed by its address) only while the FLB is
 * linked to a handler, in an FLB API call, preserved or retrieved (the last
 * two hold its module), so a module's FLB leaves nothing behind once it is
 * unregistered and idle. An incoming FLB is retrieved at most once per boot.
 */
EXPORT_SYMBOL_GPL(liveupdate_register_flb);
/* Once the FLB is linked to no handler and idle, LUO forgets it. */
EXPORT_SYMBOL_GPL(liveupdate_unregister_flb);
/* Retrieves the incoming object on first use (once per boot). */
EXPORT_SYMBOL_GPL(liveupdate_flb_get_incoming);
/* The last put finishes the incoming object. */
EXPORT_SYMBOL_GPL(liveupdate_flb_put_incoming);
/* The live outgoing object of a preserved FLB. */
EXPORT_SYMBOL_GPL(liveupdate_flb_get_outgoing);
/* Drops a reference taken by liveupdate_flb_get_outgoing(). */
EXPORT_SYMBOL_GPL(liveupdate_flb_put_outgoing);
