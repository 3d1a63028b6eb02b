# SPDX-License-Identifier: GPL-2.0
"""Unit tests of scripts/verdict.py over captured serial logs (scripts/tests/logs/).

The fixtures are make check's logs, trimmed, with kernel messages put in
where a test needs them (logs/README). Run them with scripts/tests/run.py
(one "ok host:verdict:TEST" line each) or python3 -m unittest.
"""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS = os.path.join(HERE, "logs")
VERDICT = os.path.join(os.path.dirname(HERE), "verdict.py")
sys.path.insert(0, os.path.dirname(HERE))
import verdict  # noqa: E402

CASES = os.path.join(LOGS, "ktap.cases")
FAULTS = os.path.join(LOGS, "faults.cases")
KSELFTEST = os.path.join(LOGS, "kselftest.c")
KUNIT = os.path.join(LOGS, "kunit.rs")
PANIC_CASES = os.path.join(LOGS, "panic.cases")
# The C LUO's empty-block bug (kernel/liveupdate/kho_block.c, luo_core.c).
EMPTY_BLOCK = ["luo: Block contains invalid entry count: 0",
               "Kernel panic - not syncing: The incoming tree failed to initialize properly"]


def log(name):
    return os.path.join(LOGS, name)


def kmsg(level, text):
    """A kernel console line as the VMs print them (console_msg_format=syslog)."""
    return "<%d>[    1.950500] %s\r\n" % (level, text)


class Verdicts(unittest.TestCase):
    """Helpers: judge a fixture, or a fixture with lines put in."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def variant(self, name, anchor, new):
        """A copy of fixture NAME with the lines NEW after the first line containing ANCHOR."""
        with open(log(name), newline="") as f:
            lines = f.read().splitlines(keepends=True)
        i = next(i for i, x in enumerate(lines) if anchor in x)
        path = os.path.join(self.tmp.name, name)
        with open(path, "w", newline="") as f:
            f.write("".join(lines[:i + 1] + new + lines[i + 1:]))
        return path

    def ktap(self, path, **kw):
        return dict(verdict.judge("ktap", path, [CASES], **kw))

    def failed(self, res):
        return {c: why for c, why in res.items() if why}

    def assert_only(self, res, case, *words):
        """CASE alone failed, its reason containing WORDS."""
        self.assertEqual(list(self.failed(res)), [case], res)
        for w in words:
            self.assertIn(w, res[case])


class Ktap(Verdicts):
    def test_clean_ktap_log_passes(self):
        res = self.ktap(log("ktap-clean.log"))
        self.assertEqual(len(res), 12)
        self.assertEqual(self.failed(res), {})

    def test_warn_in_case_fails_that_case_only(self):
        res = self.ktap(log("ktap-warn-in-case.log"))
        self.assert_only(res, "finish_twice_ok", "WARNING: kernel/liveupdate/luo_file.c:602")

    def test_kasan_report_fails_its_case(self):
        res = self.ktap(log("ktap-kasan.log"))
        self.assert_only(res, "retrieve_session_twice_einval", "BUG: KASAN: slab-use-after-free")

    def test_lockdep_splat_fails_its_case(self):
        res = self.ktap(log("ktap-lockdep.log"))
        self.assert_only(res, "memfd_state_survives", "possible circular locking dependency")

    def test_panic_after_last_case_fails_ktap(self):
        res = self.ktap(log("ktap-panic-after-last.log"))
        self.assert_only(res, "(after the last case)", "kernel: ", "NULL pointer dereference")

    def test_missing_case_fails(self):
        res = self.ktap(log("ktap-missing-case.log"))
        self.assert_only(res, "close_retrieved_session_finishes", "no result in the log")

    def test_printk_messages_dropped_fails(self):
        res = self.ktap(log("ktap-dropped.log"))
        self.assert_only(res, "unretrieved_file_finish", "3 printk messages dropped")

    def test_printk_messages_dropped_cannot_be_allowed(self):
        res = self.ktap(log("ktap-dropped.log"), allow=[("*", ".*")])
        self.assert_only(res, "unretrieved_file_finish", "printk messages dropped")

    def test_error_level_message_fails(self):
        path = self.variant("ktap-clean.log", "ok 1 retrieve_twice_same_file",
                            [kmsg(3, "blk_update_request: I/O error, dev vda, sector 0")])
        self.assert_only(self.ktap(path), "finish_then_retrieve_enoent", "I/O error")

    DMAR = "DMAR: DRHD: handling fault status reg 2"

    def test_error_allowed_only_by_an_error_entry(self):
        path = self.variant("ktap-clean.log", "ok 1 retrieve_twice_same_file",
                            [kmsg(3, self.DMAR)])
        # An entry for a warning does not excuse an error of the same text.
        res = self.ktap(path, allow=[("retrieve_twice_same_file", self.DMAR)])
        self.assert_only(res, "finish_then_retrieve_enoent", "DMAR")
        allow = [("retrieve_twice_same_file", self.DMAR, "error")]
        self.assertEqual(self.failed(self.ktap(path, allow=allow)), {})
        # Nor does an error entry excuse a warning.
        path = self.variant("ktap-clean.log", "ok 1 retrieve_twice_same_file",
                            [kmsg(4, "luo: " + self.DMAR)])
        allow = [("retrieve_twice_same_file", "luo: " + self.DMAR, "error")]
        self.assert_only(self.ktap(path, allow=allow), "finish_then_retrieve_enoent", "DMAR")

    def test_other_subsystem_warning_passes(self):
        path = self.variant("ktap-clean.log", "ok 1 retrieve_twice_same_file",
                            [kmsg(4, "tsc: Unable to calibrate against PIT")])
        self.assertEqual(self.failed(self.ktap(path)), {})

    def test_cut_ktap_line_is_joined_and_its_warning_charged(self):
        # "ok 3 finish_tw<6>[...] ...", a LUO warning, then "ice_ok".
        res = self.ktap(log("ktap-cut-line.log"))
        self.assert_only(res, "finish_twice_ok", "luo: Unable to finish session [kx-3] on release")
        allow = [("finish_twice_ok", r"luo: Unable to finish session \[kx-3\] on release")]
        self.assertEqual(self.failed(self.ktap(log("ktap-cut-line.log"), allow=allow)), {})


class Warnings(Verdicts):
    """Warnings of LUO, the memfd and vfio-pci handlers and KHO fail unless allowed."""

    DROPPED = r"luo: session \[kx-10\]: dropped token 0x[0-9a-f]+: no registered handler .*"

    def warning_fails(self, text):
        path = self.variant("ktap-clean.log", "ok 4 preserve_on_incoming_einval", [kmsg(4, text)])
        self.assert_only(self.ktap(path), "retrieve_session_twice_einval", text)

    def test_rust_luo_warning_fails(self):
        self.warning_fails("luo: rejected handover: LUO state is incompatible with 'luo-v5'")

    def test_c_luo_warning_fails(self):
        self.warning_fails("luo: Failed to deserialize files for session [kx-1] -22")

    def test_c_memfd_warning_fails(self):
        self.warning_fails("memfd_luo: Unable to restore folio at physical address: 1234000")

    def test_rust_memfd_warning_fails(self):
        self.warning_fails("memfd_luo_rs: memfd: not freeing a corrupt preserved memfd: EINVAL")

    def test_vfio_warning_fails(self):
        self.warning_fails("vfio_pci_luo_rs: vfio-pci: ignoring a list of 5000 preserved devices")

    def test_kho_warning_fails(self):
        self.warning_fails("KHO: setup: handover FDT (0x100000) is invalid: -9")

    def test_watched_message_at_info_level_passes(self):
        path = self.variant("ktap-clean.log", "ok 4 preserve_on_incoming_einval",
                            [kmsg(6, "luo: Retrieved live update data, liveupdate number: 1")])
        self.assertEqual(self.failed(self.ktap(path)), {})

    def test_unallowed_warning_fails(self):
        res = self.ktap(log("ktap-allowed-warn.log"))
        self.assert_only(res, "preserve_retrieved_file_busy", "dropped token 0x2a")

    def test_allowed_warning_passes_in_its_case(self):
        allow = [("preserve_retrieved_file_busy", self.DROPPED)]
        self.assertEqual(self.failed(self.ktap(log("ktap-allowed-warn.log"), allow=allow)), {})

    def test_allowed_warning_fails_in_a_later_case(self):
        allow = [("empty_session_roundtrip", self.DROPPED)]
        res = self.ktap(log("ktap-allowed-warn.log"), allow=allow)
        self.assert_only(res, "preserve_retrieved_file_busy", "dropped token")

    FREEZE = r"luo: Freeze failed for token\[0x2\] handler\[luo-rs-test-v1\] err\[Error\(5\)\]"

    def late(self, path, allow=()):
        return dict(verdict.judge("ktap", path, [FAULTS], allow=allow))

    def test_late_warning_allowed_for_an_earlier_case_of_its_boot(self):
        # Printed after "ok 5" of stage 1, charged to the first case of stage 2.
        res = self.late(log("ktap-late-warn.log"))
        self.assert_only(res, "s2_retrieve_good_object", "luo: Freeze failed")
        allow = [("s1_freeze_failure_fails_reboot", self.FREEZE)]
        self.assertEqual(self.failed(self.late(log("ktap-late-warn.log"), allow)), {})

    def test_late_warning_not_allowed_for_a_case_of_another_boot(self):
        path = self.variant("ktap-late-warn.log", "ok 2 s2_failed_retrieve_errno",
                            [kmsg(4, "luo: Freeze failed for token[0x2] handler[luo-rs-test-v1] "
                                     "err[Error(5)]")])
        allow = [("s1_freeze_failure_fails_reboot", self.FREEZE)]
        self.assert_only(self.late(path, allow), "s2_failed_retrieve_sticky", "Freeze failed")

    def test_star_allows_in_any_case(self):
        allow = [("*", self.DROPPED)]
        self.assertEqual(self.failed(self.ktap(log("ktap-allowed-warn.log"), allow=allow)), {})

    def test_allow_regex_matches_the_whole_message(self):
        allow = [("preserve_retrieved_file_busy", "luo: session")]
        res = self.ktap(log("ktap-allowed-warn.log"), allow=allow)
        self.assert_only(res, "preserve_retrieved_file_busy", "dropped token")

    def test_allow_does_not_excuse_a_warn_splat(self):
        res = self.ktap(log("ktap-warn-in-case.log"), allow=[("*", ".*")])
        self.assert_only(res, "finish_twice_ok", "WARNING:")

    def test_stages_warning_allowed_for_its_case(self):
        path = self.variant("ktap-clean.log", "ok 4 preserve_on_incoming_einval",
                            [kmsg(4, "KHO: disabling KHO revival")])
        res = dict(verdict.judge("stages", path, ["luo_rs_kexec", 2]))
        self.assertIn("KHO: disabling KHO revival", res["luo_rs_kexec"])
        allow = [("luo_rs_kexec", "KHO: disabling KHO revival")]
        res = dict(verdict.judge("stages", path, ["luo_rs_kexec", 2], allow=allow))
        self.assertEqual(res, {"luo_rs_kexec": None})


class Kselftest(Verdicts):
    def kselftest(self, name):
        return dict(verdict.judge("kselftest", log(name), [KSELFTEST]))

    def test_clean_kselftest_log_passes(self):
        res = self.kselftest("kselftest-clean.log")
        self.assertEqual(res, {"create_size_too_small": None,
                               "retrieve_session_size_too_small": None,
                               "preserve_fd_size_too_small": None})

    def test_warning_in_kselftest_case_fails_that_case_only(self):
        res = self.kselftest("kselftest-warn-in-case.log")
        self.assert_only(res, "retrieve_session_size_too_small", "memfd_luo_rs: memfd:")

    def test_kselftest_crash_after_last_ok_exit_139_fails(self):
        res = self.kselftest("kselftest-exit-139.log")
        self.assert_only(res, "(harness)", "stage 1 exited 139")

    def test_kselftest_no_exit_line_fails(self):
        res = self.kselftest("kselftest-no-exit.log")
        self.assert_only(res, "(harness)", "stage 1 exit")

    def test_panic_after_last_case_fails_kselftest(self):
        res = self.kselftest("kselftest-panic-after-last.log")
        self.assertIn("NULL pointer dereference", res["preserve_fd_size_too_small"])
        self.assertIn("(harness)", self.failed(res))


class KUnit(Verdicts):
    def test_kunit_warning_fails_the_case_it_precedes(self):
        res = dict(verdict.judge("kunit", log("kunit.log"), [KUNIT]))
        self.assertEqual(len(res), 4)
        self.assert_only(res, "luo_rs_block.writer_chains_blocks_in_order",
                         "luo: block chain: bad entry count 0")
        allow = [("luo_rs_block.writer_chains_blocks_in_order",
                  r"luo: block chain: bad entry count 0 .*")]
        res = dict(verdict.judge("kunit", log("kunit.log"), [KUNIT], allow=allow))
        self.assertEqual(self.failed(res), {})


class FirstLog(Verdicts):
    """A VM that timed out and ran again: its first serial log is judged too."""

    def test_first_log_problem_fails_the_run(self):
        res = self.ktap(log("ktap-clean.log"), first_log=log("first-problem.log"))
        self.assert_only(res, "(first run)", "WARNING: kernel/liveupdate/luo_file.c:602",
                         "(first run, timed out)")

    def test_first_log_without_signature_is_a_flaky_timeout(self):
        res = self.ktap(log("ktap-clean.log"), first_log=log("first-flaky.log"))
        self.assert_only(res, "flaky-timeout", "the first run timed out at ok 6 "
                         "new_session_reuses_incoming_name; the retry passed")

    def test_first_log_with_the_stall_signature_passes(self):
        res = self.ktap(log("ktap-clean.log"), first_log=log("first-stall.log"))
        self.assertEqual(self.failed(res), {})
        self.assertEqual(verdict.hang_signature(log("first-stall.log")), verdict.EARLY_BOOT_STALL)

    def test_stall_in_the_second_boot_is_the_signature(self):
        res = self.ktap(log("ktap-clean.log"), first_log=log("first-stall-stage2.log"))
        self.assertEqual(self.failed(res), {})
        self.assertEqual(verdict.hang_signature(log("first-stall-stage2.log")),
                         "early-boot clocksource stall")

    def test_stall_after_a_kernel_problem_is_not_the_signature(self):
        self.assertIsNone(verdict.hang_signature(log("first-stall-warn.log")))
        res = self.ktap(log("ktap-clean.log"), first_log=log("first-stall-warn.log"))
        self.assert_only(res, "(first run)", "KHO: setup: handover FDT")

    def test_a_hang_after_init_started_is_not_the_signature(self):
        self.assertIsNone(verdict.hang_signature(log("first-flaky.log")))
        self.assertIsNone(verdict.hang_signature(log("first-problem.log")))

    def test_empty_first_log_is_a_flaky_timeout(self):
        empty = os.path.join(self.tmp.name, "empty.log")
        open(empty, "w").close()
        self.assertIsNone(verdict.hang_signature(empty))
        res = self.ktap(log("ktap-clean.log"), first_log=empty)
        self.assert_only(res, "flaky-timeout", "(an empty log)")

    def test_first_log_warning_allowed_as_in_the_retry(self):
        # The allow entries apply to the first log's cases as to the retry's.
        path = self.variant("first-flaky.log", "ok 3 finish_twice_ok",
                            [kmsg(4, "KHO: disabling KHO revival")])
        res = self.ktap(log("ktap-clean.log"), first_log=path,
                        allow=[("preserve_on_incoming_einval", "KHO: disabling KHO revival")])
        self.assert_only(res, "flaky-timeout", "the first run timed out")
        res = self.ktap(log("ktap-clean.log"), first_log=path,
                        allow=[("new_session_reuses_incoming_name", "KHO: disabling KHO revival")])
        self.assert_only(res, "(first run)", "KHO: disabling KHO revival")

    def test_first_log_warning_of_the_unfinished_case_allowed(self):
        # The first run stopped after a warning: the case it was running is
        # one of those with no result yet.
        path = self.variant("first-flaky.log", "ok 6 new_session_reuses_incoming_name",
                            [kmsg(4, "KHO: disabling KHO revival")])
        res = self.ktap(log("ktap-clean.log"), first_log=path,
                        allow=[("memfd_state_survives", "KHO: disabling KHO revival")])
        self.assert_only(res, "flaky-timeout", "the first run timed out")
        res = self.ktap(log("ktap-clean.log"), first_log=path)
        self.assert_only(res, "(first run)", "KHO: disabling KHO revival")


class ExpectedPanic(Verdicts):
    """The C LUO's empty-block bug: stage 1 passes, the next kernel panics."""

    def panic(self, path, pattern=EMPTY_BLOCK, cases=PANIC_CASES):
        return dict(verdict.judge("panic", path, ["next_kernel_panics", pattern, cases]))

    def test_expected_panic_passes(self):
        self.assertEqual(self.panic(log("panic-empty-block.log")), {"next_kernel_panics": None})

    def test_expected_panic_without_cases_file_passes(self):
        res = self.panic(log("panic-empty-block.log"), cases="")
        self.assertEqual(res, {"next_kernel_panics": None})

    def test_a_different_panic_fails(self):
        res = self.panic(log("panic-empty-block.log"),
                         pattern=EMPTY_BLOCK[:1] + ["Kernel panic - not syncing: Fatal exception"])
        self.assertIn("a different panic", res["next_kernel_panics"])
        # Its warning is expected only as a PATTERN.
        res = self.panic(log("panic-empty-block.log"), pattern=EMPTY_BLOCK[1:])
        self.assertIn("kernel: ", res["next_kernel_panics"])
        self.assertIn("luo: Block contains invalid entry count: 0", res["next_kernel_panics"])

    def test_expected_panic_needs_stage1_ok_lines(self):
        path = os.path.join(self.tmp.name, "more.cases")
        with open(path, "w") as f:
            f.write("s1_fill_one_block\ns1_duplicate_create_eexist\ns1_third\n")
        res = self.panic(log("panic-empty-block.log"), cases=path)
        self.assertIn("no \"ok\" line for s1_third", res["next_kernel_panics"])

    def test_expected_panic_after_another_warning_fails(self):
        path = self.variant("panic-empty-block.log", "Retrieved live update data",
                            [kmsg(4, "KHO: disabling KHO revival")])
        self.assertIn("KHO: disabling KHO revival", self.panic(path)["next_kernel_panics"])

    def test_expected_panic_with_a_panic_in_stage1_fails(self):
        path = self.variant("panic-empty-block.log", "ok 1 s1_fill_one_block",
                            [kmsg(0, "Kernel panic - not syncing: Fatal exception")])
        self.assertIn("panicked before stage 1 ended", self.panic(path)["next_kernel_panics"])


class Cli(Verdicts):
    def cli(self, *args):
        p = subprocess.run([sys.executable, VERDICT] + list(args), capture_output=True, text=True)
        return p.returncode, p.stdout.splitlines()

    def test_cli_allow_and_exit_status(self):
        rc, out = self.cli("ktap", log("ktap-allowed-warn.log"), "v:s", CASES)
        self.assertEqual(rc, 1)
        self.assertIn("not ok v:s:preserve_retrieved_file_busy # kernel: ", "\n".join(out))
        rc, out = self.cli("--allow", "preserve_retrieved_file_busy=" + Warnings.DROPPED,
                           "ktap", log("ktap-allowed-warn.log"), "v:s", CASES)
        self.assertEqual((rc, len(out)), (0, 12), out)
        self.assertEqual(out[0], "ok v:s:retrieve_twice_same_file")

    def test_cli_first_log_and_panic(self):
        rc, out = self.cli("--first-log", log("first-flaky.log"), "ktap", log("ktap-clean.log"),
                           "v:s", CASES)
        self.assertEqual(rc, 1)
        self.assertTrue(out[-1].startswith("not ok v:s:flaky-timeout # "), out)
        rc, out = self.cli("--cases", PANIC_CASES, "panic", log("panic-empty-block.log"),
                           "c:fixes-panic", "next_kernel_panics", *EMPTY_BLOCK)
        self.assertEqual((rc, out), (0, ["ok c:fixes-panic:next_kernel_panics"]))

    def test_cli_crash_fails_the_case(self):
        rc, out = self.cli("ktap", log("ktap-clean.log"), "v:s", "/nonexistent.cases")
        self.assertEqual(rc, 2)
        self.assertTrue(out[0].startswith("not ok v:s:(verdict) # verdict.py failed"), out)


if __name__ == "__main__":
    unittest.main()
