// SPDX-License-Identifier: GPL-2.0
//! The cases of kunit.log: the luo_rs_block suite (kernel/liveupdate/block.rs),
//! as verdict.py finds them.

#[kunit_tests(luo_rs_block)]
mod tests {
    #[test]
    fn entries_per_block_match_the_c_luo() {}

    #[test]
    fn blocks_needed_rounds_up() {}

    #[test]
    fn writer_chains_blocks_in_order() {}

    #[test]
    fn grow_refuses_beyond_the_limit() {}
}
