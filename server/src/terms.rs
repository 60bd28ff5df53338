//! Words of messages as the full-text index and `--search` see them.
//!
//! A term is a maximal run of letters and digits (Unicode alphanumerics,
//! with the combining marks that follow them), folded to lower case and
//! stripped of accents: "Café", "CAFE" and "cafe\u{301}" are all `cafe`,
//! while "グ" stays itself (its voicing mark is not an accent).
//! Anything else separates terms, and bytes that are not UTF-8 do too.
//!
//! The index holds, for each block of entries, the distinct terms of its
//! messages ([`block_text`]), folded here and separated by spaces, without
//! positions (FTS5 `detail=none`, `ascii` tokenizer). So the index answers
//! "which blocks contain all these terms", and a [`Search`] checks each
//! entry of those blocks: every word of the search, as its run of terms
//! ("10.0.0.1" is `10 0 0 1` in a row). Both sides fold with this one
//! module, so the index and the check never disagree about what a term is.

use rustc_hash::FxHashSet;
use std::cell::RefCell;
use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// Calls `f` with each term of `text`, folded, in order.
pub fn for_each_term(text: &[u8], mut f: impl FnMut(&str)) {
    let mut out = String::new();
    index_text(text, &mut out);
    out.split(' ').filter(|t| !t.is_empty()).for_each(&mut f);
}

/// Appends `c` lower-cased and without its accents: the marks of the
/// combining diacritical blocks, which is what accents are in Latin,
/// Greek and Cyrillic. Other scripts' marks (Japanese voicing marks,
/// Indic vowel signs) change the letter and stay.
fn fold(c: char, out: &mut String) {
    for lower in c.to_lowercase() {
        if is_diacritic(lower) {
            continue;
        }
        let mut accented = false;
        decompose_canonical(lower, |d| accented |= is_diacritic(d));
        if accented {
            decompose_canonical(lower, |d| {
                if !is_diacritic(d) {
                    out.push(d);
                }
            });
        } else {
            out.push(lower);
        }
    }
}

fn is_diacritic(c: char) -> bool {
    matches!(c,
        '\u{300}'..='\u{36f}'
        | '\u{1ab0}'..='\u{1aff}'
        | '\u{1dc0}'..='\u{1dff}'
        | '\u{20d0}'..='\u{20ff}'
        | '\u{fe20}'..='\u{fe2f}')
}

/// Writes the terms of `message` to `out`, separated by spaces. The one
/// definition of a term: everything else splits this text again.
pub fn index_text(message: &[u8], out: &mut String) {
    let mut in_term = false;
    let mut rest = message;
    while let Some(&b) = rest.first() {
        if b.is_ascii_alphanumeric() {
            // Most journal text is ASCII: copy a whole run at once.
            let n = rest
                .iter()
                .position(|b| !b.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            start_term(&mut in_term, out);
            let from = out.len();
            out.push_str(std::str::from_utf8(&rest[..n]).unwrap_or_default());
            out[from..].make_ascii_lowercase();
            rest = &rest[n..];
        } else if b.is_ascii() {
            in_term = false;
            rest = &rest[1..];
        } else {
            let n = rest.iter().position(u8::is_ascii).unwrap_or(rest.len());
            for chunk in rest[..n].utf8_chunks() {
                for c in chunk.valid().chars() {
                    if c.is_alphanumeric() || is_combining_mark(c) {
                        start_term(&mut in_term, out);
                        fold(c, out);
                    } else {
                        in_term = false;
                    }
                }
                if !chunk.invalid().is_empty() {
                    in_term = false;
                }
            }
            rest = &rest[n..];
        }
    }
}

/// Writes each distinct term of `messages` (a block's messages, joined)
/// once to `out`, separated by spaces: the block's row in the index.
/// `messages` is lower-cased in place (ASCII only), so that runs of ASCII
/// letters and digits, nearly all terms in practice, are taken as slices
/// of it; other runs go through [`index_text`].
pub fn block_text(messages: &mut [u8], out: &mut Vec<u8>) {
    messages.make_ascii_lowercase();
    let is_separator = |b: &u8| b.is_ascii() && !b.is_ascii_alphanumeric();
    let mut seen: FxHashSet<&[u8]> = FxHashSet::default();
    let mut folded = String::new();
    let mut unicode: FxHashSet<String> = FxHashSet::default();
    let push = |out: &mut Vec<u8>, term: &[u8]| {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(term);
    };
    // A term may come both ways ("d" as a run, and from "d\xff" folded),
    // so each way checks the other's set too; the second set is nearly
    // always empty.
    let folded_has = |unicode: &FxHashSet<String>, term: &[u8]| {
        !unicode.is_empty() && std::str::from_utf8(term).is_ok_and(|t| unicode.contains(t))
    };
    for run in messages.split(is_separator).filter(|r| !r.is_empty()) {
        if run.is_ascii() {
            if !folded_has(&unicode, run) && seen.insert(run) {
                push(out, run);
            }
            continue;
        }
        folded.clear();
        index_text(run, &mut folded);
        for term in folded.split(' ').filter(|t| !t.is_empty()) {
            if !unicode.contains(term) && !seen.contains(term.as_bytes()) {
                push(out, term.as_bytes());
                unicode.insert(term.to_owned());
            }
        }
    }
}

fn start_term(in_term: &mut bool, out: &mut String) {
    if !*in_term {
        if !out.is_empty() {
            out.push(' ');
        }
        *in_term = true;
    }
}

/// A `--search`: every whitespace-separated word must occur in the
/// message, as its run of terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    words: Vec<Vec<String>>,
}

/// Why a search text cannot be searched for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search word {0:?} has no letters or digits to search for")]
pub struct NoTerms(pub String);

impl Search {
    /// `None` for a text with no words.
    pub fn parse(text: &str) -> Result<Option<Search>, NoTerms> {
        let mut words = Vec::new();
        for word in text.split_whitespace() {
            let mut terms = Vec::new();
            for_each_term(word.as_bytes(), |t| terms.push(t.to_owned()));
            if terms.is_empty() {
                return Err(NoTerms(word.to_owned()));
            }
            words.push(terms);
        }
        Ok((!words.is_empty()).then_some(Search { words }))
    }

    /// The FTS5 query for the candidates: every distinct term, quoted (a
    /// term holds no quote), all required.
    pub fn fts_query(&self) -> String {
        let mut terms: Vec<&str> = self.words.iter().flatten().map(String::as_str).collect();
        terms.sort_unstable();
        terms.dedup();
        let quoted: Vec<String> = terms.iter().map(|t| format!("\"{t}\"")).collect();
        quoted.join(" ")
    }

    /// Whether `message` has every word, each as its terms in a row.
    pub fn matches(&self, message: &[u8]) -> bool {
        // A query checks up to hundreds of thousands of candidates; the
        // buffers are the thread's, reused from one to the next.
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::default();
        }
        SCRATCH.with_borrow_mut(|scratch| self.matches_with(message, scratch))
    }

    fn matches_with(&self, message: &[u8], scratch: &mut Scratch) -> bool {
        let Scratch { lower, text, terms } = scratch;
        // Most candidates lack a term altogether. In ASCII text a term is
        // a lower-cased substring, so its absence decides without
        // splitting the message into terms.
        if message.is_ascii() {
            lower.clear();
            lower.extend(message.iter().map(u8::to_ascii_lowercase));
            let present = |t: &String| memchr::memmem::find(lower, t.as_bytes()).is_some();
            if !self.words.iter().flatten().all(present) {
                return false;
            }
        }
        text.clear();
        index_text(message, text);
        terms.clear();
        let mut at = 0;
        for t in text.split(' ') {
            if !t.is_empty() {
                terms.push(at..at + t.len());
            }
            at += t.len() + 1;
        }
        let text = text.as_str();
        self.words.iter().all(|w| {
            terms
                .windows(w.len())
                .any(|run| run.iter().zip(w).all(|(a, b)| text[a.clone()] == *b))
        })
    }
}

/// Buffers of [`Search::matches`].
#[derive(Default)]
struct Scratch {
    lower: Vec<u8>,
    text: String,
    terms: Vec<std::ops::Range<usize>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for_each_term(text, |t| out.push(t.to_owned()));
        out
    }

    #[test]
    fn terms_are_folded_runs_of_letters_and_digits() {
        assert_eq!(
            terms(b"Connection to 10.0.0.1:443 timed-out (ERR_42)"),
            [
                "connection",
                "to",
                "10",
                "0",
                "0",
                "1",
                "443",
                "timed",
                "out",
                "err",
                "42"
            ]
        );
        assert_eq!(
            terms("Café CAFÉ cafe\u{301} Ärger straße".as_bytes()),
            ["cafe", "cafe", "cafe", "arger", "straße"]
        );
        assert_eq!(
            terms("日本語のログ 𝔘nicode".as_bytes()),
            ["日本語のログ", "𝔘nicode"]
        );
        assert_eq!(terms("Αθήνα Ёлка".as_bytes()), ["αθηνα", "елка"]);
        assert!(terms(b"  -- !! \n").is_empty());
    }

    #[test]
    fn bytes_that_are_not_utf8_separate_terms() {
        assert_eq!(terms(b"bin\xff\xfeary\0data"), ["bin", "ary", "data"]);
    }

    #[test]
    fn index_text_is_the_terms_separated_by_spaces() {
        let mut out = String::new();
        index_text(b"GET /api/v1?id=7 -> 200", &mut out);
        assert_eq!(out, "get api v1 id 7 200");
        out.clear();
        index_text(b"", &mut out);
        assert_eq!(out, "");
    }

    #[test]
    fn a_search_quotes_its_distinct_terms() {
        let s = Search::parse("  10.0.0.1 \"OR\" or NEAR(x)")
            .unwrap()
            .unwrap();
        assert_eq!(s.fts_query(), "\"0\" \"1\" \"10\" \"near\" \"or\" \"x\"");
        assert_eq!(Search::parse(" \t "), Ok(None));
        assert_eq!(Search::parse("ok --"), Err(NoTerms("--".into())));
    }

    proptest::proptest! {
        /// Whatever the bytes, terms are whole for the index's tokenizer
        /// (no ASCII punctuation or space inside), and a search for any
        /// run of a message's terms finds that message: the index never
        /// drops a candidate the check would take.
        #[test]
        fn every_run_of_terms_finds_its_message(
            text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            s in "[a-zA-Z0-9 .,é\u{301}Ωß日-]{0,40}",
            from in 0usize..8,
            len in 1usize..4,
        ) {
            for text in [&text[..], s.as_bytes()] {
                let mut all = Vec::new();
                for_each_term(text, |t| all.push(t.to_owned()));
                for t in &all {
                    proptest::prop_assert!(!t.is_empty());
                    proptest::prop_assert!(!t.bytes().any(|b| b.is_ascii() && !b.is_ascii_alphanumeric()));
                }
                if from + len <= all.len() {
                    let word = all[from..from + len].join("-");
                    let search = Search::parse(&word).unwrap().unwrap();
                    proptest::prop_assert!(search.matches(text), "{word:?} in {text:?}");
                }
            }
        }

        /// A block's text has each term of its messages once, the same
        /// terms as folding each message on its own: the fast path for
        /// ASCII runs splits where the folding does.
        #[test]
        fn a_block_has_exactly_the_terms_of_its_messages(
            messages in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48),
                    proptest::strategy::Strategy::prop_map(
                        "[a-zA-Z0-9 .,_é\u{301}Ωß日\u{300}-]{0,40}",
                        String::into_bytes,
                    ),
                ],
                0..6,
            ),
        ) {
            let mut expected = std::collections::BTreeSet::new();
            for m in &messages {
                for_each_term(m, |t| {
                    expected.insert(t.to_owned());
                });
            }
            let mut out = Vec::new();
            block_text(&mut messages.join(&b'\n'), &mut out);
            let out = String::from_utf8(out).unwrap();
            let terms: Vec<&str> = out.split(' ').filter(|t| !t.is_empty()).collect();
            let distinct: std::collections::BTreeSet<String> =
                terms.iter().map(|t| (*t).to_owned()).collect();
            proptest::prop_assert_eq!(terms.len(), distinct.len(), "each term once: {:?}", out);
            proptest::prop_assert_eq!(distinct, expected);
        }
    }

    #[test]
    fn a_block_holds_each_term_once() {
        let block = |text: &[u8]| {
            let mut out = Vec::new();
            block_text(&mut text.to_vec(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            block(b"Disk full on sda\ndisk FULL on sdb\n\xff"),
            "disk full on sda sdb"
        );
        assert_eq!(block("Caf\u{e9} CAFÉ ok\0OK".as_bytes()), "cafe ok");
        assert_eq!(block(b""), "");
    }

    #[test]
    fn words_of_several_terms_match_only_in_a_row() {
        let s = Search::parse("10.0.0.1 Timeout").unwrap().unwrap();
        assert!(s.matches(b"connect to 10.0.0.1 failed: timeout"));
        assert!(s.matches(b"TIMEOUT talking to 10-0-0-1"));
        assert!(!s.matches(b"10.0.0.2 timeout, retry 1 of 0"));
        assert!(!s.matches(b"connect to 10.0.0.1 failed"));
        let s = Search::parse("café").unwrap().unwrap();
        assert!(s.matches("CAFE\u{301} open".as_bytes()));
        assert!(!s.matches(b"cafeteria"));
    }
}
