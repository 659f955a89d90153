//! "did you mean `idle_timeout`?": which accepted key a misspelt one was probably meant to be.
//!
//! An unknown key is usually a slip of the fingers, and naming the key it was meant to be saves
//! the operator a trip to the docs. The comparison is an edit distance, bounded so that a
//! suggestion is only made when it is likely right.

/// The key of `accepted` that `typed` most likely misspells: the closest by edit distance
/// (letter case ignored; swapping two neighbours is one edit), when that distance is at most a
/// third of `typed`'s length, clamped to 1..=2. Beyond that a short key is another word, and a
/// long one a different setting. On a tie, the first in `accepted` (reading order) wins.
pub fn did_you_mean<'k>(
    typed: &str,
    accepted: impl IntoIterator<Item = &'k str>,
) -> Option<&'k str> {
    let typed_lower = typed.to_lowercase();
    let limit = (typed.chars().count() / 3).clamp(1, 2);
    let mut best: Option<(usize, &str)> = None;
    for candidate in accepted {
        let d = edit_distance(&typed_lower, &candidate.to_lowercase());
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, key)| key)
}

/// The optimal string alignment distance between `a` and `b`, in characters: insertions,
/// deletions, substitutions and transpositions of neighbours each count one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the dynamic-programming table: two back (for transpositions), the last,
    // and the one being filled.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut last: Vec<usize> = (0..=b.len()).collect();
    let mut row: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            row[j] = d;
        }
        std::mem::swap(&mut before, &mut last);
        std::mem::swap(&mut last, &mut row);
    }
    last[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_stay_within_a_third_of_the_key() {
        let keys = [
            "access",
            "path",
            "glob",
            "idle_timeout",
            "absolute_timeout",
            "ca",
        ];
        assert_eq!(did_you_mean("acess", keys), Some("access"));
        assert_eq!(did_you_mean("pahts", keys), None);
        assert_eq!(did_you_mean("ptah", keys), Some("path"));
        assert_eq!(did_you_mean("idle_timout", keys), Some("idle_timeout"));
        assert_eq!(did_you_mean("idel_timeout", keys), Some("idle_timeout"));
        assert_eq!(did_you_mean("idle_tmuot", keys), None);
        assert_eq!(did_you_mean("x", keys), None);
        assert_eq!(did_you_mean("cb", keys), Some("ca"));
        assert_eq!(did_you_mean("timeout", keys), None);
        assert_eq!(did_you_mean("anything", []), None);
    }

    #[test]
    fn edit_distance_counts_characters_and_swaps() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("timeout", "tiemout"), 1);
        assert_eq!(edit_distance("ca", "ac"), 1);
        assert_eq!(edit_distance("héllo", "hello"), 1);
        assert_eq!(edit_distance("idle_timout", "idle_timeout"), 1);
    }
}
