//! Fuzz the whole front end: lexing, parsing (file and single-statement modes), rendering
//! diagnostics, and the print → parse round trip of whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match rql_parser::parse_statements(src) {
        Ok(statements) => {
            for s in statements {
                let printed = rql_parser::print_statement(&s);
                let again = rql_parser::parse_single(&printed).expect("printed form parses");
                assert_eq!(again, s, "round trip of {printed}");
            }
        }
        Err(diags) => {
            for d in diags {
                let _ = d.render(src, "<fuzz>", false);
            }
        }
    }
    if let Err(d) = rql_parser::parse_single(src) {
        let _ = d.render(src, "<fuzz>", false);
    }
});
