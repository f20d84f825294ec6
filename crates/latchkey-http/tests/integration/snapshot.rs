//! JSON snapshots with volatile values redacted: ids, tokens, secrets and times become
//! `[name]`, also where they appear inside links. `UPDATE_SNAPSHOTS=1` rewrites the files;
//! otherwise a missing or different snapshot fails the test.

use serde_json::Value;

const REDACT: &[&str] = &[
    "id",
    "stateToken",
    "sessionToken",
    "expiresAt",
    "passwordChanged",
    "created",
    "lastUpdated",
    "sharedSecret",
    "errorId",
    "userId",
];

fn collect(value: &Value, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if let (true, Some(text)) = (REDACT.contains(&key.as_str()), v.as_str()) {
                    found.push((text.to_owned(), format!("[{key}]")));
                }
                collect(v, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        _ => {}
    }
}

fn replace(value: &mut Value, found: &[(String, String)]) {
    match value {
        Value::String(text) => {
            for (secret, name) in found {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), name);
                }
            }
            if let Some(at) = text.find("/qr/") {
                text.replace_range(at + 4.., "[qrToken]");
            }
            // Okta-style ids in link paths (20 alphanumerics) that no redacted field names.
            if text.starts_with("http") {
                let segments: Vec<String> = text
                    .split('/')
                    .map(|seg| {
                        let okta_id = seg.len() == 20 && seg.chars().all(|c| c.is_ascii_alphanumeric());
                        if okta_id { "[id]".to_owned() } else { seg.to_owned() }
                    })
                    .collect();
                *text = segments.join("/");
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| replace(v, found)),
        Value::Array(items) => items.iter_mut().for_each(|v| replace(v, found)),
        _ => {}
    }
}

pub fn redacted(value: &Value) -> Value {
    let mut found = Vec::new();
    collect(value, &mut found);
    // Longest first, so a value that contains another is replaced whole.
    found.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
    let mut copy = value.clone();
    replace(&mut copy, &found);
    copy
}

pub fn assert_snapshot(name: &str, value: &Value) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.json"));
    let actual = serde_json::to_string_pretty(&redacted(value)).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("missing snapshot {}; run with UPDATE_SNAPSHOTS=1 and review it", path.display())
    });
    assert_eq!(actual, expected, "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it after review)");
}
