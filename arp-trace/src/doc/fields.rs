//! The man page's JSON FIELDS section.

use roff::Roff;

pub fn json_fields(roff: &mut Roff) {
    roff.control("PP", []);
    roff.text([roff::roman("TODO")]);
}
