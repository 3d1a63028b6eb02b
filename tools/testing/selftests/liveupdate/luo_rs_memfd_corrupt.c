// SPDX-License-Identifier: GPL-2.0-only
/*
 * Corrupt memfd handovers, refused by the next kernel's memfd handler: a pfn
 * of no preserved folio, an index beyond the size, nr_folios beyond the folio
 * array, unknown folio flags, unknown header flags, unknown seals
 * (EOPNOTSUPP), a folio-array descriptor naming no preserved page, and folio
 * indices out of order; each must fail RETRIEVE_FD with its errno, again on a
 * second try, and leave FINISH working. A sound memfd next to them survives.
 *
 * Needs the Rust memfd handler with CONFIG_LIVEUPDATE_RUST_TEST in the first
 * kernel (it corrupts through debugfs liveupdate/test_memfd) and the Rust handler in
 * the second (upstream's C handler oopses on some of these).
 */
#define LUO_RS_MEMFD_CORRUPT
#include "luo_rs_memfd.c"
