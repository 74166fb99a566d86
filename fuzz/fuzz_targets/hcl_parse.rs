//! Parses arbitrary input as HCL (or JSON); whatever parses must normalize,
//! print with `to_hcl`, and read back to the same JSON.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(body) = meshgate_hcl::parse(&text) else {
        return;
    };
    let json = meshgate_hcl::to_json(&body);
    let hcl = meshgate_hcl::to_hcl(&json);
    match meshgate_hcl::parse_to_json(&hcl) {
        Ok(again) => assert_eq!(again, json, "printed HCL:\n{hcl}"),
        Err(err) => panic!("printed HCL does not parse: {err}\nprinted HCL:\n{hcl}"),
    }
});
