# SPDX-License-Identifier: GPL-2.0
# The luod suites of `make check`, sourced by scripts/check.sh (which
# defines vm_case, BUILD and REPO). luod-tests (tools/liveupdate/luod-tests)
# runs in the guest:
#   luod              one boot: luod (/tests/luod) started, driven over its
#                     socket as two client uids and root: authorization,
#                     policy grant, kill -9 and restart through the holder
#                     process, a seeded malformed-request fuzz, 1,000
#                     sessions, kexec refusals;
#   luod-kexec        two boots: clients fill sessions through luod, luod
#                     restarts, luod loads the next kernel (hand-over report
#                     checked); in the next kernel a new luod reads its
#                     manifest, the clients retrieve and verify their memfds
#                     byte for byte (one after a luod restart), and finish;
# They need CONFIG_NET and CONFIG_UNIX in the test kernels
# (config/common.config). luod-tests --inproc (luod.inproc=1 on the kernel
# command line) runs luod's request engine in-process, without the socket,
# for kernels without Unix sockets; make check does not run it (the socket
# suites cover the same paths).

# luod_suites VARIANT: run the suites on VARIANT (after run_variant built
# its guest and its single.cpio and kexec.cpio).
luod_suites() {
	local v=$1 g=$BUILD/guest-$1 t=$BUILD/guest-$1/tests/luod-tests
	"$t" --list > "$g/luod-single.list"
	{ "$t" -s 1 --list; "$t" -s 2 --list; } | sort -u > "$g/luod-kexec.list"
	# The single-boot suite drives luod's userspace paths only (the same on
	# both LUOs): on rust only, for the time budget.
	if [ "$v" = rust ]; then
		vm_case "$v" luod luod-tests "$g/single.cpio" 1 300 "ktap:$g/luod-single.list"
	fi
	vm_case "$v" luod-kexec luod-tests "$g/kexec.cpio" 2 300 "ktap:$g/luod-kexec.list"
}
