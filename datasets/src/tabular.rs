//! Tabular data: numeric feature columns and one target column, from CSV files, the bundled
//! sets (`data/README.md`) or the synthetic generators ([`crate::generate`]).
//!
//! A [`Table`] holds `rows × features` values as `f64`, row-major, and a [`Target`]: class
//! indices with their names (classification) or values (regression). [`Table::split`] makes a
//! seeded train/test split, stratified by class for classification.

use crate::error::DataError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

/// Most rows and columns a CSV may have (so a hostile file cannot make us allocate without
/// bound before we notice).
pub const MAX_ROWS: usize = 10_000_000;
/// Most columns of a CSV.
pub const MAX_COLUMNS: usize = 100_000;

/// What the target column holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Class index per row, `0..names.len()`; `names[k]` is class `k`'s label as written in the
    /// file (classes are sorted: numerically when every label is an integer, else as text).
    Classes {
        /// Class of each row.
        labels: Vec<u32>,
        /// Label text of each class.
        names: Vec<String>,
    },
    /// Value per row (regression).
    Values(Vec<f64>),
}

/// Whether the target names classes or values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Integer or text labels.
    Classification,
    /// Numbers.
    Regression,
}

/// Which column is the target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TargetColumn {
    /// The last column (the default).
    #[default]
    Last,
    /// By 0-based index.
    Index(usize),
    /// By header name (the file must have a header).
    Name(String),
}

impl std::str::FromStr for TargetColumn {
    type Err = std::convert::Infallible;

    /// A number is a 0-based index, anything else a column name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().parse::<usize>() {
            Ok(i) => TargetColumn::Index(i),
            Err(_) => TargetColumn::Name(s.trim().to_owned()),
        })
    }
}

/// How to read a CSV file.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// `Some(true)`: the first row is a header; `Some(false)`: it is data; `None`: a header when
    /// no cell of the first row is a number, or some column's first cell is not a number but its
    /// second is (always when the target is given by name).
    pub header: Option<bool>,
    /// The target column.
    pub target: TargetColumn,
    /// Classification or regression.
    pub task: Task,
    /// Field delimiter (`b','` by default).
    pub delimiter: u8,
}

impl CsvOptions {
    /// Options for `task` with the defaults: header detected, target last, comma-separated.
    pub fn new(task: Task) -> Self {
        Self {
            header: None,
            target: TargetColumn::Last,
            task,
            delimiter: b',',
        }
    }
}

/// A table of numeric features and a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Name of each feature column (`column 3` when the file has no header).
    pub feature_names: Vec<String>,
    /// The target column's name.
    pub target_name: String,
    /// `rows × features` values, row-major.
    pub features: Vec<f64>,
    /// The target of each row.
    pub target: Target,
}

fn csv_error(source: &str, row: usize, column: Option<(usize, &str)>, reason: String) -> DataError {
    DataError::Csv {
        source_name: source.to_owned(),
        row,
        column: column.map(|(i, name)| format!("column {} ('{name}')", i + 1)),
        reason,
    }
}

fn parse_number(cell: &str) -> Option<f64> {
    let v: f64 = cell.trim().parse().ok()?;
    v.is_finite().then_some(v)
}

impl Table {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        match &self.target {
            Target::Classes { labels, .. } => labels.len(),
            Target::Values(v) => v.len(),
        }
    }

    /// Number of feature columns.
    pub fn width(&self) -> usize {
        self.feature_names.len()
    }

    /// Row `i`'s features.
    ///
    /// # Panics
    /// If `i >= rows()`.
    pub fn row(&self, i: usize) -> &[f64] {
        let d = self.width();
        &self.features[i * d..(i + 1) * d]
    }

    /// Number of classes (0 for regression).
    pub fn classes(&self) -> usize {
        match &self.target {
            Target::Classes { names, .. } => names.len(),
            Target::Values(_) => 0,
        }
    }

    /// Read a CSV file; `source_name` names it in errors.
    ///
    /// # Errors
    /// [`DataError::Csv`] naming the row (1-based, as an editor shows it) and column of a
    /// malformed cell, a ragged row, a missing target column, an empty file, or a single
    /// class; [`DataError::Io`] if it cannot be read.
    pub fn from_csv(
        reader: impl Read,
        source_name: &str,
        opts: &CsvOptions,
    ) -> Result<Table, DataError> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(opts.delimiter)
            .flexible(true)
            .from_reader(reader);
        let mut records = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| csv_error(source_name, i + 1, None, e.to_string()))?;
            if rec.len() > MAX_COLUMNS {
                return Err(csv_error(
                    source_name,
                    i + 1,
                    None,
                    format!("{} columns; at most {MAX_COLUMNS}", rec.len()),
                ));
            }
            // Blank lines (a trailing newline, or spacing) carry no row.
            if rec.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            records.push((i + 1, rec));
            if records.len() > MAX_ROWS + 1 {
                return Err(csv_error(
                    source_name,
                    i + 1,
                    None,
                    format!("more than {MAX_ROWS} rows"),
                ));
            }
        }
        let Some((_, first)) = records.first() else {
            return Err(csv_error(
                source_name,
                0,
                None,
                "the file has no rows".into(),
            ));
        };
        let width = first.len();
        if width < 2 {
            return Err(csv_error(
                source_name,
                records[0].0,
                None,
                format!("{width} column; a table needs at least one feature and a target"),
            ));
        }
        let header = match opts.header {
            Some(h) => h,
            None if matches!(opts.target, TargetColumn::Name(_)) => true,
            None => {
                first.iter().all(|c| parse_number(c).is_none())
                    || (records.len() > 1
                        && (0..width).any(|c| {
                            parse_number(&first[c]).is_none()
                                && records[1].1.get(c).and_then(parse_number).is_some()
                        }))
            }
        };
        let names: Vec<String> = if header {
            first.iter().map(|s| s.trim().to_owned()).collect()
        } else {
            (1..=width).map(|c| format!("column {c}")).collect()
        };
        let target = match &opts.target {
            TargetColumn::Last => width - 1,
            TargetColumn::Index(i) if *i < width => *i,
            TargetColumn::Index(i) => {
                return Err(csv_error(
                    source_name,
                    records[0].0,
                    None,
                    format!(
                        "target column index {i}, but rows have {width} columns (0 to {})",
                        width - 1
                    ),
                ))
            }
            TargetColumn::Name(n) => names.iter().position(|h| h == n).ok_or_else(|| {
                csv_error(
                    source_name,
                    records[0].0,
                    None,
                    format!(
                        "no column named '{n}'; the header has: {}",
                        names.join(", ")
                    ),
                )
            })?,
        };
        let data = &records[usize::from(header)..];
        if data.is_empty() {
            return Err(csv_error(
                source_name,
                records[0].0,
                None,
                "the file has a header but no data rows".into(),
            ));
        }
        let d = width - 1;
        let mut features = Vec::with_capacity(data.len().saturating_mul(d));
        let mut raw_targets = Vec::with_capacity(data.len());
        for (line, rec) in data {
            if rec.len() != width {
                return Err(csv_error(
                    source_name,
                    *line,
                    None,
                    format!("{} cells, but the first row has {width}", rec.len()),
                ));
            }
            for (c, cell) in rec.iter().enumerate() {
                if c == target {
                    if cell.trim().is_empty() {
                        return Err(csv_error(
                            source_name,
                            *line,
                            Some((c, &names[c])),
                            "the target is missing".into(),
                        ));
                    }
                    raw_targets.push(cell.trim().to_owned());
                    continue;
                }
                let v = parse_number(cell).ok_or_else(|| {
                    csv_error(
                        source_name,
                        *line,
                        Some((c, &names[c])),
                        format!("'{}' is not a finite number", cell.trim()),
                    )
                })?;
                features.push(v);
            }
        }
        let target_values = match opts.task {
            Task::Regression => Target::Values(
                raw_targets
                    .iter()
                    .zip(data)
                    .map(|(t, (line, _))| {
                        parse_number(t).ok_or_else(|| {
                            csv_error(
                                source_name,
                                *line,
                                Some((target, &names[target])),
                                format!(
                                    "target '{t}' is not a number (a regression needs numbers)"
                                ),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Task::Classification => {
                let classes = class_names(&raw_targets);
                if classes.len() < 2 {
                    return Err(csv_error(
                        source_name,
                        data[0].0,
                        Some((target, &names[target])),
                        format!(
                            "every row has class '{}'; a classifier needs at least two classes",
                            raw_targets[0]
                        ),
                    ));
                }
                let labels = raw_targets
                    .iter()
                    .map(|t| classes.iter().position(|c| c == t).expect("collected") as u32)
                    .collect();
                Target::Classes {
                    labels,
                    names: classes,
                }
            }
        };
        let mut feature_names = names.clone();
        let target_name = feature_names.remove(target);
        Ok(Table {
            feature_names,
            target_name,
            features,
            target: target_values,
        })
    }

    /// Read the CSV file at `path` (`.gz` files are decompressed).
    ///
    /// # Errors
    /// As [`Table::from_csv`]; [`DataError::Io`] if it cannot be opened.
    pub fn load_csv(path: &Path, opts: &CsvOptions) -> Result<Table, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let name = path.display().to_string();
        if path.extension().is_some_and(|e| e == "gz") {
            Self::from_csv(flate2::read::GzDecoder::new(file), &name, opts)
        } else {
            Self::from_csv(std::io::BufReader::new(file), &name, opts)
        }
    }

    /// An image set as a table: one feature per pixel, `p / 255 ∈ [0, 1]` (named `pixel k`),
    /// the digit labels as classes `0..classes` (named by their numbers).
    pub fn from_images(set: &crate::ImageSet, classes: usize) -> Table {
        Table {
            feature_names: (0..set.pixels()).map(|k| format!("pixel {k}")).collect(),
            target_name: "label".into(),
            features: set.images.iter().map(|&p| p as f64 / 255.0).collect(),
            target: Target::Classes {
                labels: set.labels.iter().map(|&l| l as u32).collect(),
                names: (0..classes).map(|c| c.to_string()).collect(),
            },
        }
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Table {
        let d = self.width();
        let mut features = Vec::with_capacity(indices.len() * d);
        for &i in indices {
            features.extend_from_slice(self.row(i));
        }
        let target = match &self.target {
            Target::Classes { labels, names } => Target::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                names: names.clone(),
            },
            Target::Values(v) => Target::Values(indices.iter().map(|&i| v[i]).collect()),
        };
        Table {
            feature_names: self.feature_names.clone(),
            target_name: self.target_name.clone(),
            features,
            target,
        }
    }

    /// A seeded train/test split with `test_fraction` of the rows in the test part: per class
    /// for classification (every class with at least two rows has at least one in each part),
    /// over all rows for regression.
    ///
    /// # Errors
    /// [`DataError::Split`] for a fraction outside (0, 1) or a table too small to split.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Table, Table), DataError> {
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(DataError::Split(format!(
                "test fraction {test_fraction}; give a value between 0 and 1, e.g. 0.2"
            )));
        }
        let n = self.rows();
        if n < 2 {
            return Err(DataError::Split(format!(
                "{n} row; a train/test split needs at least 2"
            )));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let groups: Vec<Vec<usize>> = match &self.target {
            Target::Classes { labels, names } => (0..names.len() as u32)
                .map(|k| (0..n).filter(|&i| labels[i] == k).collect())
                .collect(),
            Target::Values(_) => vec![(0..n).collect()],
        };
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for mut g in groups {
            g.shuffle(&mut rng);
            let mut t = (g.len() as f64 * test_fraction).round() as usize;
            if g.len() >= 2 {
                t = t.clamp(1, g.len() - 1);
            }
            test.extend_from_slice(&g[..t]);
            train.extend_from_slice(&g[t..]);
        }
        // Interleave the classes again, deterministically.
        train.shuffle(&mut rng);
        test.shuffle(&mut rng);
        Ok((self.select(&train), self.select(&test)))
    }
}

/// Class names in a fixed order: numeric order when every label is an integer, else text order.
fn class_names(raw: &[String]) -> Vec<String> {
    let distinct: BTreeSet<&str> = raw.iter().map(String::as_str).collect();
    let mut names: Vec<String> = distinct.into_iter().map(str::to_owned).collect();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().expect("checked"));
    }
    names
}
