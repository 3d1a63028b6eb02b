# SPDX-License-Identifier: GPL-2.0
# The luod suites of `make check`, sourced by scripts/check.sh (which
# defines vm_case, BUILD and REPO). luod-tests (tools/liveupdate/luod-tests)
# starts luod (/tests/luod) in the guest and drives it as two client uids
# and root:
#   luod        one boot: authorization, policy grant, kill -9 and restart
#               through the holder process, a seeded malformed-request fuzz,
#               1,000 sessions, kexec refusals;
#   luod-kexec  two boots: clients fill sessions through luod, luod restarts,
#               luod loads the next kernel (hand-over report checked); in the
#               next kernel a new luod reads its manifest, the clients
#               retrieve and verify their memfds byte for byte, and finish.
# The test kernels need CONFIG_NET and CONFIG_UNIX (config/common.config).

# luod_suites VARIANT: run both suites on VARIANT (after run_variant built
# its guest and its single.cpio and kexec.cpio).
luod_suites() {
	local v=$1 g=$BUILD/guest-$1
	"$g/tests/luod-tests" --list > "$g/luod-single.list"
	{ "$g/tests/luod-tests" -s 1 --list; "$g/tests/luod-tests" -s 2 --list; } |
		sort -u > "$g/luod-kexec.list"
	vm_case "$v" luod luod-tests "$g/single.cpio" 1 300 "ktap:$g/luod-single.list"
	vm_case "$v" luod-kexec luod-tests "$g/kexec.cpio" 2 300 "ktap:$g/luod-kexec.list"
}
