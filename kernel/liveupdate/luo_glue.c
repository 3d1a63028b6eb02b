// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for the Rust Live Update Orchestrator (luo_rs.rs): what Rust code
 * cannot declare itself, the early parameter, the initcalls and the exports.
 */

#include <linux/cpufeature.h>
#include <linux/export.h>
#include <linux/fault-inject.h>
#include <linux/init.h>
#include <linux/kstrtox.h>
#include <linux/limits.h>
#include <linux/liveupdate.h>
#include <linux/notifier.h>
#include <linux/reboot.h>
#include <linux/sched/clock.h>
#include <linux/syscore_ops.h>
#ifdef CONFIG_X86
#include <asm/tsc.h>
#endif

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

/*
 * The clock of the live update timeline (timeline.rs): the TSC on x86, which a
 * kexec does not reset, so that one clock spans both kernels; elsewhere
 * local_clock(), which starts again in each.
 */
static bool luo_rs_tsc(void)
{
#ifdef CONFIG_X86
	return boot_cpu_has(X86_FEATURE_TSC) && tsc_khz;
#else
	return false;
#endif
}

u64 luo_rs_clock(void)
{
#ifdef CONFIG_X86
	if (luo_rs_tsc())
		return rdtsc();
#endif
	return local_clock();
}

u32 luo_rs_clock_khz(void)
{
#ifdef CONFIG_X86
	if (luo_rs_tsc())
		return tsc_khz;
#endif
	return 1000000;
}

bool luo_rs_clock_is_tsc(void)
{
	return luo_rs_tsc();
}

#ifdef CONFIG_FAULT_INJECTION
/*
 * fail_liveupdate_deserialize: building the incoming sessions at the first
 * open of /dev/liveupdate fails (ENOMEM, as an allocation there can), so
 * that tests can see what LUO makes of it: that open and every later one
 * fail with EIO.
 * Set it with the fault-injection attributes in debugfs
 * (fail_liveupdate_deserialize/); see
 * Documentation/fault-injection/fault-injection.rst.
 */
static DECLARE_FAULT_ATTR(fail_liveupdate_deserialize);

bool luo_rs_should_fail_deserialize(void)
{
	return should_fail(&fail_liveupdate_deserialize, 1);
}

#ifdef CONFIG_FAULT_INJECTION_DEBUG_FS
static int __init fail_liveupdate_deserialize_debugfs(void)
{
	struct dentry *dir = fault_create_debugfs_attr("fail_liveupdate_deserialize",
						       NULL, &fail_liveupdate_deserialize);

	return PTR_ERR_OR_ZERO(dir);
}
late_initcall(fail_liveupdate_deserialize_debugfs);
#endif /* CONFIG_FAULT_INJECTION_DEBUG_FS */
#endif /* CONFIG_FAULT_INJECTION */

/*
 * The last two points of the timeline's reboot path: device shutdown begins
 * right after the reboot notifiers, so the last of them marks it; syscore
 * shutdown comes after device shutdown, just before machine_shutdown() and
 * machine_kexec(), and this callback is among its last (see luo_rs_early()).
 */
static int luo_rs_reboot_notify(struct notifier_block *nb, unsigned long action,
				void *data)
{
	/* The test handler's deliberate corruption of the handover just written. */
	if (IS_ENABLED(CONFIG_LIVEUPDATE_RUST_TEST))
		luo_rs_test_corrupt();
	luo_rs_timeline_mark(LUO_RS_MARK_DEVICES);
	return NOTIFY_DONE;
}

static struct notifier_block luo_rs_reboot_nb = {
	.notifier_call = luo_rs_reboot_notify,
	.priority = INT_MIN,
};

static void luo_rs_syscore_shutdown(void *data)
{
	luo_rs_timeline_mark(LUO_RS_MARK_JUMP);
}

static const struct syscore_ops luo_rs_syscore_ops = {
	.shutdown = luo_rs_syscore_shutdown,
};

static struct syscore luo_rs_syscore = {
	.ops = &luo_rs_syscore_ops,
};

static int __init luo_rs_early(void)
{
	int err = luo_rs_early_init();

	/*
	 * Syscore shutdown callbacks run in the reverse order of their
	 * registration: registered this early, this one runs after nearly
	 * every other, as close to machine_shutdown() as syscore gets.
	 */
	if (!err && liveupdate_enabled())
		register_syscore(&luo_rs_syscore);
	return err;
}
early_initcall(luo_rs_early);

static int __init luo_rs_late(void)
{
	int err = luo_rs_late_init();

	if (!err && liveupdate_enabled())
		register_reboot_notifier(&luo_rs_reboot_nb);
	return err;
}
late_initcall(luo_rs_late);

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
