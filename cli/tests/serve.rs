//! `qfhe keygen`, `qfhe serve` and `qfhe predict` as separate processes on loopback: a PNG
//! predicted over HTTP equals the exact circuit, and a server killed with SIGKILL and restarted
//! still serves the key registered before (the client does not register again).

use qfhe_circuit::fixtures::chain;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const QFHE: &str = env!("CARGO_BIN_EXE_qfhe");

/// Start `qfhe serve` and wait for the address it prints.
fn serve(circuit: &Path, keys_dir: &Path, addr: &str) -> (Child, String) {
    let mut child = Command::new(QFHE)
        .args(["serve", "--threads", "2", "--addr", addr])
        .arg("--circuit")
        .arg(circuit)
        .arg("--keys-dir")
        .arg(keys_dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_owned();
        }
    };
    // Keep draining stderr so that the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn predict(url: &str, circuit: &Path, keys: &Path, image: &Path) -> serde_json::Value {
    let out = Command::new(QFHE)
        .args(["predict", "--json", "--server", url])
        .arg("--circuit")
        .arg(circuit)
        .arg("--keys")
        .arg(keys)
        .arg("--image")
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "predict failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn registered_key_id(keys: &Path) -> String {
    let regs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(keys.join("servers.json")).unwrap()).unwrap();
    let (_, reg) = regs.as_object().unwrap().iter().next().unwrap();
    reg["key_id"].as_str().unwrap().to_owned()
}

#[test]
fn predict_over_http_equals_the_exact_circuit_and_survives_a_sigkill_restart() {
    let dir = tempfile::tempdir().unwrap();
    let circuit_path = dir.path().join("circuit.json");
    let c = chain();
    c.save(&circuit_path).unwrap();
    let keys = dir.path().join("keys");
    let status = Command::new(QFHE)
        .args(["keygen", "--circuit"])
        .arg(&circuit_path)
        .arg("--out")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(status.status.success());

    // A 2×2 gray image for the chain fixture's four inputs.
    let image = dir.path().join("x.png");
    {
        let f = std::fs::File::create(&image).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 2, 2);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()
            .unwrap()
            .write_image_data(&[255, 0, 128, 200])
            .unwrap();
    }

    let store = dir.path().join("server-keys");
    let (mut server, url) = serve(&circuit_path, &store, "127.0.0.1:0");
    let first = predict(&url, &circuit_path, &keys, &image);
    assert_eq!(first["prediction"], first["exact_prediction"], "{first}");
    assert!(first["upload_bytes"].as_u64().unwrap() > 0);
    assert!(first["download_bytes"].as_u64().unwrap() > 0);
    let key_id = registered_key_id(&keys);

    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let addr = url.trim_start_matches("http://").to_owned();
    let (mut server, url2) = serve(&circuit_path, &store, &addr);
    assert_eq!(url2, url);
    let second = predict(&url, &circuit_path, &keys, &image);
    assert_eq!(second["prediction"], first["prediction"]);
    assert_eq!(
        registered_key_id(&keys),
        key_id,
        "the restarted server must serve the key registered before"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    // Only whole registrations in the keys folder, no temporary files.
    let names: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("{key_id}.reg")]);
}
