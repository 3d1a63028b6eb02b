// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! The kernel command line: kernel parameters, then init's arguments.
//!
//! Linux parses its command line up to the first standalone `--` word and
//! hands everything after it to init as arguments, unparsed
//! (`parse_args()` stops at `--`). A kernel parameter written after it is
//! no kernel parameter: the kernel never sees `liveupdate=on` in
//! `console=ttyS0 -- liveupdate=on`, init gets it in its argv. Whoever reads
//! `/proc/cmdline` for a kernel or module parameter, or adds one to the
//! command line of the next kernel, must look only at the part before the
//! `--`: [`split`] and [`add_params`].
//!
//! ```
//! use liveupdate::cmdline;
//!
//! let (params, init) = cmdline::split("console=ttyS0 liveupdate=on -- test=t stage=1\n");
//! assert_eq!(params, "console=ttyS0 liveupdate=on");
//! assert_eq!(init, Some("test=t stage=1"));
//! assert_eq!(
//!     cmdline::add_params("liveupdate=on -- stage=1", "quiet"),
//!     "liveupdate=on quiet -- stage=1"
//! );
//! ```
//!
//! Words are split as the kernel's `next_arg()` splits them: at ASCII
//! whitespace outside double quotes, so the `--` in `dyndbg="... -- ..."`
//! is not the separator (and `"--"`, its quotes stripped, is).

/// Whitespace as the kernel's `isspace()` has it, for ASCII.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Whether `word` (as the command line spells it) is the kernel's `--`:
/// `next_arg()` strips the quotes of a word that starts with one.
fn is_separator(word: &str) -> bool {
    match word.strip_prefix('"') {
        Some(w) => w.strip_suffix('"').unwrap_or(w) == "--",
        None => word == "--",
    }
}

/// Split `cmdline` at its first standalone `--` word: the kernel
/// parameters before it, and the arguments after it that the kernel hands
/// to init (`None` if there is no `--`; `Some("")` if nothing follows it).
///
/// Both parts are slices of `cmdline` with the whitespace around them
/// trimmed (`/proc/cmdline` ends with a newline); a later `--` belongs to
/// init's arguments.
pub fn split(cmdline: &str) -> (&str, Option<&str>) {
    let mut in_quote = false;
    let mut start = None;
    // `start`: where the current word begins; a space stands for the end
    // of the text.
    for (i, c) in cmdline.char_indices().chain(std::iter::once((cmdline.len(), ' '))) {
        match start {
            // The end of the text ends a word even in an unclosed quote.
            Some(s) if is_space(c) && (!in_quote || i == cmdline.len()) => {
                if is_separator(&cmdline[s..i]) {
                    return (cmdline[..s].trim_matches(is_space), Some(cmdline[i..].trim_matches(is_space)));
                }
                start = None;
                continue;
            }
            None if is_space(c) => continue,
            None => start = Some(i),
            Some(_) => {}
        }
        if c == '"' {
            in_quote = !in_quote;
        }
    }
    (cmdline.trim_matches(is_space), None)
}

/// The command line of kernel parameters `params` and init arguments
/// `init` (after a `--` when `Some`, even an empty one): the inverse of
/// [`split`], with one space between the parts.
pub fn join(params: &str, init: Option<&str>) -> String {
    let params = params.trim_matches(is_space);
    match init.map(|a| a.trim_matches(is_space)) {
        None => params.to_string(),
        Some(a) => [params, "--", a].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(" "),
    }
}

/// `cmdline` with the kernel parameters `extra` added after its own, before
/// the `--` of init's arguments if it has one (after it, they would be
/// init's arguments instead), else at the end. `extra` is taken as
/// kernel parameters only: a `--` in it would start init's arguments.
pub fn add_params(cmdline: &str, extra: &str) -> String {
    let (params, init) = split(cmdline);
    let extra = extra.trim_matches(is_space);
    if extra.is_empty() {
        return join(params, init);
    }
    if params.is_empty() {
        return join(extra, init);
    }
    join(&format!("{params} {extra}"), init)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_standalone_dashes() {
        assert_eq!(split("a b=1"), ("a b=1", None));
        assert_eq!(split("a -- b c"), ("a", Some("b c")));
        assert_eq!(split("a -- b -- c"), ("a", Some("b -- c")));
        assert_eq!(split("-- b"), ("", Some("b")));
        assert_eq!(split("a --"), ("a", Some("")));
        assert_eq!(split("--"), ("", Some("")));
        assert_eq!(split(" \ta\t--\nb  c\n"), ("a", Some("b  c")));
        assert_eq!(split("a\x0b--\x0cb\r"), ("a", Some("b")));
        assert_eq!(split(""), ("", None));
        assert_eq!(split("  \n"), ("", None));
    }

    #[test]
    fn only_a_whole_word_separates() {
        assert_eq!(split("a --b c"), ("a --b c", None));
        assert_eq!(split("a b-- c"), ("a b-- c", None));
        assert_eq!(split("a --- c"), ("a --- c", None));
        assert_eq!(split("a --=x c"), ("a --=x c", None));
        assert_eq!(split("a x=-- c"), ("a x=-- c", None));
    }

    #[test]
    fn quotes_as_the_kernel_reads_them() {
        // Inside quotes, `--` is part of a value.
        assert_eq!(split(r#"a x="1 -- 2" b"#), (r#"a x="1 -- 2" b"#, None));
        assert_eq!(split(r#"a x="1 -- 2" -- b"#), (r#"a x="1 -- 2""#, Some("b")));
        assert_eq!(split(r#""a -- b" -- c"#), (r#""a -- b""#, Some("c")));
        // next_arg() strips the quotes of a quoted word.
        assert_eq!(split(r#"a "--" b"#), ("a", Some("b")));
        // An unclosed quote runs to the end.
        assert_eq!(split(r#"a x="1 -- 2"#), (r#"a x="1 -- 2"#, None));
        assert_eq!(split(r#"a "--"#), ("a", Some("")));
        // Non-ASCII text around the separator.
        assert_eq!(split("é=ü -- ß"), ("é=ü", Some("ß")));
    }

    #[test]
    fn joins_what_it_split() {
        for c in ["a b", "a -- b c", "-- b", "a --", "--", "", "a -- b -- c"] {
            let (p, i) = split(c);
            assert_eq!(join(p, i), c, "{c:?}");
        }
        assert_eq!(join(" a ", Some(" b\n")), "a -- b");
    }

    #[test]
    fn adds_params_before_the_dashes() {
        assert_eq!(add_params("a -- stage=1", "m=1"), "a m=1 -- stage=1");
        assert_eq!(add_params("a b", "m=1 n"), "a b m=1 n");
        assert_eq!(add_params("-- stage=1", "m=1"), "m=1 -- stage=1");
        assert_eq!(add_params("a --", "m=1"), "a m=1 --");
        assert_eq!(add_params("", "m=1"), "m=1");
        assert_eq!(add_params("a -- x -- y\n", "m=1"), "a m=1 -- x -- y");
        assert_eq!(add_params("a -- b", ""), "a -- b");
        // What is added lands among the kernel parameters.
        assert_eq!(split(&add_params("a -- b", "m=1")), ("a m=1", Some("b")));
    }
}
