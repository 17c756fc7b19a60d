//! CSV tables: headers detected or given, integer and string labels, targets by name or index,
//! every malformed input an error naming its row and column; stratified seeded splits; the
//! bundled and synthetic sets.

use qfhe_datasets::bundled;
use qfhe_datasets::error::DataError;
use qfhe_datasets::generate::{self, ClassificationSpec};
use qfhe_datasets::tabular::{CsvOptions, Table, Target, TargetColumn, Task};

fn read(text: &str, opts: &CsvOptions) -> Result<Table, DataError> {
    Table::from_csv(text.as_bytes(), "t.csv", opts)
}

fn classes() -> CsvOptions {
    CsvOptions::new(Task::Classification)
}

fn err(text: &str, opts: &CsvOptions) -> String {
    read(text, opts).unwrap_err().to_string()
}

#[test]
fn headers_are_detected_and_string_labels_sorted() {
    let t = read("a,b,kind\n1,2.5,dog\n3,4,cat\n5,6,dog\n", &classes()).unwrap();
    assert_eq!(t.feature_names, ["a", "b"]);
    assert_eq!(t.target_name, "kind");
    assert_eq!(t.features, [1.0, 2.5, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(
        t.target,
        Target::Classes {
            labels: vec![1, 0, 1],
            names: vec!["cat".into(), "dog".into()]
        }
    );
    // No header: generic names; integer labels in numeric order (10 after 9).
    let t = read("1,2,10\n3,4,9\n5,6,10\n", &classes()).unwrap();
    assert_eq!(t.feature_names, ["column 1", "column 2"]);
    assert_eq!(
        t.target,
        Target::Classes {
            labels: vec![1, 0, 1],
            names: vec!["9".into(), "10".into()]
        }
    );
    // A header forced off reads a numeric-looking first row as data.
    let mut o = classes();
    o.header = Some(false);
    assert_eq!(read("1,2,0\n3,4,1\n", &o).unwrap().rows(), 2);
}

#[test]
fn the_target_is_chosen_by_name_or_index() {
    let text = "y,a,b\n0,1,2\n1,3,4\n";
    let mut o = classes();
    o.target = "y".parse().unwrap();
    let t = read(text, &o).unwrap();
    assert_eq!(t.feature_names, ["a", "b"]);
    assert_eq!(t.features, [1.0, 2.0, 3.0, 4.0]);
    o.target = TargetColumn::Index(0);
    assert_eq!(read(text, &o).unwrap().target_name, "y");
    let mut r = CsvOptions::new(Task::Regression);
    r.target = "b".parse().unwrap();
    assert_eq!(
        read(text, &r).unwrap().target,
        Target::Values(vec![2.0, 4.0])
    );
}

#[test]
fn malformed_csvs_say_which_row_and_column() {
    let e = err("a,b,c\n1,2,x\n3,oops,y\n", &classes());
    assert!(
        e.contains("row 3") && e.contains("column 2 ('b')") && e.contains("'oops'"),
        "{e}"
    );
    let e = err("a,b,c\n1,2,x\n3,4\n", &classes());
    assert!(e.contains("row 3") && e.contains("2 cells"), "{e}");
    assert!(err("", &classes()).contains("no rows"));
    assert!(err("a,b,c\n", &classes()).contains("no data rows"));
    let e = err("a,b,c\n1,2,x\n3,4,x\n", &classes());
    assert!(e.contains("at least two classes"), "{e}");
    let mut o = classes();
    o.target = "label".parse().unwrap();
    let e = err("a,b,c\n1,2,x\n", &o);
    assert!(
        e.contains("no column named 'label'") && e.contains("a, b, c"),
        "{e}"
    );
    o.target = TargetColumn::Index(7);
    assert!(err("a,b,c\n1,2,x\n3,4,y\n", &o).contains("index 7"));
    let e = err("a,b,c\n1,2,\n3,4,y\n", &classes());
    assert!(
        e.contains("target is missing") && e.contains("row 2"),
        "{e}"
    );
    let e = err(
        "a,b,y\n1,2,big\n3,4,5\n",
        &CsvOptions::new(Task::Regression),
    );
    assert!(
        e.contains("not a number") && e.contains("column 3 ('y')"),
        "{e}"
    );
    assert!(err("a,b,c\n1,inf,x\n2,3,y\n", &classes()).contains("finite"));
    assert!(err("1\n2\n", &classes()).contains("at least one feature"));
}

#[test]
fn splits_are_stratified_seeded_and_partition_the_rows() {
    let t = bundled::load("iris").unwrap();
    let (train, test) = t.split(0.2, 7).unwrap();
    assert_eq!(train.rows() + test.rows(), 150);
    assert_eq!(test.rows(), 30);
    let count = |tab: &Table, k: u32| match &tab.target {
        Target::Classes { labels, .. } => labels.iter().filter(|&&l| l == k).count(),
        Target::Values(_) => unreachable!(),
    };
    for k in 0..3 {
        assert_eq!(count(&test, k), 10, "class {k}");
    }
    // Every row is in exactly one part.
    let mut all: Vec<Vec<u64>> = (0..150)
        .map(|i| t.row(i).iter().map(|v| v.to_bits()).collect())
        .collect();
    let mut parts: Vec<Vec<u64>> = (0..train.rows())
        .map(|i| train.row(i).iter().map(|v| v.to_bits()).collect())
        .chain((0..test.rows()).map(|i| test.row(i).iter().map(|v| v.to_bits()).collect()))
        .collect();
    all.sort();
    parts.sort();
    assert_eq!(all, parts);
    assert_eq!(t.split(0.2, 7).unwrap().1, test, "same seed, same split");
    assert_ne!(
        t.split(0.2, 8).unwrap().1,
        test,
        "another seed, another split"
    );
    assert!(t.split(1.0, 7).is_err() && t.split(0.0, 7).is_err());
}

#[test]
fn the_bundled_sets_have_their_published_shapes() {
    for (name, rows, width, classes) in [
        ("iris", 150, 4, 3),
        ("breast-cancer", 569, 30, 2),
        ("wine", 178, 13, 3),
        ("digits", 1797, 64, 10),
        ("diabetes", 442, 10, 0),
        ("synthetic-regression", 1000, 10, 0),
        ("synthetic-classification", 1000, 20, 2),
    ] {
        let t = bundled::load(name).unwrap();
        assert_eq!(
            (t.rows(), t.width(), t.classes()),
            (rows, width, classes),
            "{name}"
        );
        assert_eq!(
            bundled::task(name).unwrap() == Task::Regression,
            classes == 0
        );
    }
    let bc = bundled::load("breast-cancer").unwrap();
    let Target::Classes { labels, names } = &bc.target else {
        panic!("classes")
    };
    assert_eq!(names, &["benign", "malignant"]);
    assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 212);
    assert!(bundled::load("spambase")
        .unwrap_err()
        .to_string()
        .contains("breast-cancer"));
}

#[test]
fn generators_are_seeded_and_carry_their_signal() {
    let a = generate::regression(400, 6, 3, 1.0, 5);
    assert_eq!(a, generate::regression(400, 6, 3, 1.0, 5));
    assert_ne!(a, generate::regression(400, 6, 3, 1.0, 6));
    let Target::Values(y) = &a.target else {
        panic!("values")
    };
    // The target correlates with informative features only.
    let corr = |j: usize| {
        let x: Vec<f64> = (0..400).map(|i| a.row(i)[j]).collect();
        let (mx, my) = (x.iter().sum::<f64>() / 400.0, y.iter().sum::<f64>() / 400.0);
        let cov: f64 = x.iter().zip(y).map(|(p, q)| (p - mx) * (q - my)).sum();
        let vx: f64 = x.iter().map(|p| (p - mx).powi(2)).sum();
        let vy: f64 = y.iter().map(|q| (q - my).powi(2)).sum();
        cov / (vx * vy).sqrt()
    };
    assert!((0..3).any(|j| corr(j) > 0.3));
    assert!((3..6).all(|j| corr(j).abs() < 0.2));

    let spec = ClassificationSpec {
        rows: 600,
        classes: 3,
        ..ClassificationSpec::default()
    };
    let c = generate::classification(&spec, 1);
    assert_eq!(c, generate::classification(&spec, 1));
    let Target::Classes { labels, .. } = &c.target else {
        panic!("classes")
    };
    for k in 0..3u32 {
        let n = labels.iter().filter(|&&l| l == k).count();
        assert!((180..=220).contains(&n), "class {k}: {n} rows");
    }
    // Three classes on the square's vertices 0, round(1.5) = 2 and 3 (binary 00, 10, 11):
    // feature 0 carries the low bit, feature 1 the high bit.
    let mean = |k: u32, f: usize| {
        let rows: Vec<usize> = (0..600).filter(|&i| labels[i] == k).collect();
        rows.iter().map(|&i| c.row(i)[f]).sum::<f64>() / rows.len() as f64
    };
    assert!(mean(0, 0) < -0.5 && mean(0, 1) < -0.5);
    assert!(mean(1, 0) < -0.5 && mean(1, 1) > 0.5);
    assert!(mean(2, 0) > 0.5 && mean(2, 1) > 0.5);

    // Two classes sit on opposite corners.
    let two = generate::classification(&ClassificationSpec::default(), 2);
    let Target::Classes { labels, .. } = &two.target else {
        panic!("classes")
    };
    for f in 0..2 {
        let m = |k: u32| {
            let rows: Vec<usize> = (0..1000).filter(|&i| labels[i] == k).collect();
            rows.iter().map(|&i| two.row(i)[f]).sum::<f64>() / rows.len() as f64
        };
        assert!(m(0) < -0.5 && m(1) > 0.5, "feature {f}");
    }
}

#[test]
fn gzip_files_load_and_missing_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, b"a,b\n1,x\n2,y\n").unwrap();
    std::fs::write(&p, enc.finish().unwrap()).unwrap();
    assert_eq!(Table::load_csv(&p, &classes()).unwrap().rows(), 2);
    let missing = dir.path().join("none.csv");
    let e = Table::load_csv(&missing, &classes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.csv"), "{e}");
}
