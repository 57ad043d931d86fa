//! Every snippet of `docs/clients.md` runs against a real server: the Python package's example (`sf3d_client`,
//! `pip install ./clients/python`), the raw Python WebSocket and REST clients, curl, and the JavaScript `fetch`
//! client. (`cargo xtask setup` installs the pinned Python packages they import, and the package.)

use crate::support::{Options, TestServer, temp_dir, test_png};

/// `(language, code)` of every fenced block; the `sf3d remote` examples name a real lab host and are skipped.
fn snippets() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(crate::support::manifest_dir().join("../docs/clients.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```").filter(|l| !l.is_empty()) {
            let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            let code = body.join("\n");
            if !code.contains("lab-gpu") {
                out.push((lang.trim().to_string(), code));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_client_snippet_works_against_a_real_server() {
    let srv = TestServer::start(Options::default()).await;
    let dir = temp_dir("clients");
    let image = dir.join("shirt.png");
    std::fs::write(&image, test_png()).unwrap();
    let blocks = snippets();
    let langs: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(langs, ["python", "python", "python", "sh", "js"], "the snippets of docs/clients.md");
    assert!(blocks[0].1.contains("from sf3d_client import"), "the package's example comes first");
    for (i, (lang, code)) in blocks.iter().enumerate() {
        let out = dir.join(format!("out-{i}"));
        std::fs::create_dir_all(&out).unwrap();
        // A snippet that saves into the pipeline's output folder finds one: its metadata.json has other keys.
        let into = code.contains("save_into(");
        if into {
            std::fs::write(
                out.join("metadata.json"),
                r#"{"transcript": "a red shirt", "timings": {"speech_ms": 812}}"#,
            )
            .unwrap();
        }
        let (program, file) = match lang.as_str() {
            "python" => ("python3", dir.join(format!("snippet-{i}.py"))),
            "sh" => ("bash", dir.join(format!("snippet-{i}.sh"))),
            "js" => ("node", dir.join(format!("snippet-{i}.mjs"))),
            other => panic!("unexpected snippet language {other}"),
        };
        // The Python client asks for texture 1024; keep the test fast by letting the server default apply to
        // nothing else: the snippets run exactly as printed.
        std::fs::write(&file, code).unwrap();
        let o = tokio::process::Command::new(program)
            .arg(&file)
            .arg(&image)
            .arg(&out)
            .env("SF3D_SERVER", &srv.base)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{program} missing ({e}): run cargo xtask setup"));
        let (so, se) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{lang} snippet {i} failed:\n{code}\n--- stdout\n{so}\n--- stderr\n{se}");
        let glb = std::fs::read(out.join("mesh.glb"))
            .unwrap_or_else(|e| panic!("{lang} snippet {i} wrote no mesh.glb ({e})\n{so}{se}"));
        crate::support::check_glb(&format!("client_snippet_{i}"), &glb);
        if into {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join("metadata.json")).unwrap()).unwrap();
            assert_eq!(meta["transcript"], "a red shirt", "{meta}");
            assert_eq!(meta["timings"]["speech_ms"], 812, "{meta}");
            assert_eq!(meta["mesh"]["file"], "mesh.glb", "{meta}");
            assert_eq!(meta["mesh"]["glb_bytes"], glb.len(), "{meta}");
            assert!(meta["mesh"]["client"]["round_trip_ms"].as_f64().unwrap() > 0.0, "{meta}");
        }
        println!("{lang} snippet {i}: ok\n{so}");
    }
    srv.stop().await;
}
