//! Multi-row `INSERT`s in a fixed set of shapes: 2^k rows for k up to a
//! maximum, so that sqlx prepares each shape once per connection and
//! keeps it, and a batch of n rows costs one round trip to SQLite's worker
//! thread per set bit of n instead of one per row.

/// `INSERT … VALUES` statements of 1, 2, 4, … 2^`log2_max` rows of
/// `params` parameters each, after `head` (`INSERT INTO t (a, b)`).
pub fn statements(head: &str, params: usize, log2_max: usize) -> Vec<String> {
    let row = format!("({})", vec!["?"; params].join(","));
    (0..=log2_max)
        .map(|k| format!("{head} VALUES {}", vec![row.as_str(); 1 << k].join(",")))
        .collect()
}

/// `rows` cut into chunks of the shapes of [`statements`], largest first,
/// each with its shape's index.
pub fn chunks<T>(mut rows: &[T], log2_max: usize) -> impl Iterator<Item = (usize, &[T])> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let k = log2_max.min(rows.len().ilog2() as usize);
        let (chunk, tail) = rows.split_at(1 << k);
        rows = tail;
        Some((k, chunk))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_chunks_cover_every_row_once() {
        let sql = statements("INSERT INTO t (a, b)", 2, 2);
        assert_eq!(sql[0], "INSERT INTO t (a, b) VALUES (?,?)");
        assert_eq!(
            sql[2],
            "INSERT INTO t (a, b) VALUES (?,?),(?,?),(?,?),(?,?)"
        );
        let rows: Vec<u32> = (0..11).collect();
        let cut: Vec<(usize, Vec<u32>)> = chunks(&rows, 2).map(|(k, c)| (k, c.to_vec())).collect();
        assert_eq!(
            cut,
            vec![
                (2, vec![0, 1, 2, 3]),
                (2, vec![4, 5, 6, 7]),
                (1, vec![8, 9]),
                (0, vec![10])
            ]
        );
        assert_eq!(chunks::<u32>(&[], 2).count(), 0);
    }
}
