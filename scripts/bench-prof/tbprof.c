// SPDX-License-Identifier: GPL-2.0
/*
 * tbprof: a QEMU TCG plugin (plugin API version 1, as in Debian's QEMU 7.2)
 * that counts the guest instructions executed per translation block between
 * marker addresses, phase by phase. For scripts/bench-prof.sh; use -smp 1.
 *
 *   -plugin tbprof.so,on=0xADDR,off=0xADDR[,off=0xADDR...][,watch=0xADDR...],out=FILE
 *
 * Entering the block at "on" starts a phase; entering one at an "off"
 * address ends it, and every block that ran in it is appended to FILE as
 * "phase P VADDR INSNS EXECS" (INSNS instructions per execution). For each
 * "watch" address (a function entry), the blocks that ran just before it are
 * counted too, as "edge P WATCH PREV1 PREV2 COUNT": its callers, give or take
 * a jump. Only the few plugin calls below are used; they are declared here
 * because Debian ships no plugin header.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
	void (*cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb));
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
	void (*cb)(unsigned int vcpu_index, void *userdata), int flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
	void (*cb)(qemu_plugin_id_t id, void *userdata), void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

struct rec {
	uint64_t vaddr;
	uint64_t insns;
	uint64_t execs;
	struct rec *next;
};

static struct rec *all;
static uint64_t on_addr, off_addr[4];
static int n_off;
static int enabled, phase;
static uint64_t prev1, prev2, watch[8];
static int n_watch;

struct edge {
	uint64_t to, p1, p2, count;
	struct edge *next;
};
static struct edge *edges;

static void note_edge(uint64_t to)
{
	struct edge *e;

	for (e = edges; e; e = e->next)
		if (e->to == to && e->p1 == prev1 && e->p2 == prev2) {
			e->count++;
			return;
		}
	e = calloc(1, sizeof(*e));
	e->to = to; e->p1 = prev1; e->p2 = prev2; e->count = 1;
	e->next = edges;
	edges = e;
}

static FILE *out;

static void exec_cb(unsigned int vcpu, void *ud)
{
	struct rec *r = ud;

	if (enabled) {
		r->execs++;
		for (int i = 0; i < n_watch; i++)
			if (r->vaddr == watch[i])
				note_edge(r->vaddr);
	}
	prev2 = prev1;
	prev1 = r->vaddr;
}

static void on_cb(unsigned int vcpu, void *ud)
{
	enabled = 1;
}

static void off_cb(unsigned int vcpu, void *ud)
{
	struct rec *r;

	if (!enabled)
		return;
	enabled = 0;
	phase++;
	for (r = all; r; r = r->next) {
		if (r->execs)
			fprintf(out, "phase %d %lx %lu %lu\n", phase,
				(unsigned long)r->vaddr, (unsigned long)r->insns,
				(unsigned long)r->execs);
		r->execs = 0;
	}
	for (struct edge *e = edges; e; e = e->next) {
		if (e->count)
			fprintf(out, "edge %d %lx %lx %lx %lu\n", phase, (unsigned long)e->to,
				(unsigned long)e->p1, (unsigned long)e->p2, (unsigned long)e->count);
		e->count = 0;
	}
	fflush(out);
}

static void trans_cb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	struct rec *r = calloc(1, sizeof(*r));

	r->vaddr = qemu_plugin_tb_vaddr(tb);
	r->insns = qemu_plugin_tb_n_insns(tb);
	r->next = all;
	all = r;
	for (int i = 0; i < n_off; i++)
		if (r->vaddr == off_addr[i])
			qemu_plugin_register_vcpu_tb_exec_cb(tb, off_cb, 0, NULL);
	qemu_plugin_register_vcpu_tb_exec_cb(tb, exec_cb, 0, r);
	if (r->vaddr == on_addr)
		qemu_plugin_register_vcpu_tb_exec_cb(tb, on_cb, 0, NULL);
}

static void atexit_cb(qemu_plugin_id_t id, void *ud)
{
	if (out)
		fclose(out);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
			int argc, char **argv)
{
	const char *file = "tbprof.out";

	for (int i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "on=", 3))
			on_addr = strtoull(argv[i] + 3, NULL, 0);
		else if (!strncmp(argv[i], "off=", 4) && n_off < 4)
			off_addr[n_off++] = strtoull(argv[i] + 4, NULL, 0);
		else if (!strncmp(argv[i], "watch=", 6) && n_watch < 8)
			watch[n_watch++] = strtoull(argv[i] + 6, NULL, 0);
		else if (!strncmp(argv[i], "out=", 4))
			file = argv[i] + 4;
	}
	out = fopen(file, "w");
	if (!out || !on_addr || !n_off)
		return -1;
	qemu_plugin_register_vcpu_tb_trans_cb(id, trans_cb);
	qemu_plugin_register_atexit_cb(id, atexit_cb, NULL);
	return 0;
}
