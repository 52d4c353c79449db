//! Every round shape the protocol targets pick builds its happy-path
//! fixture (a fixture that cannot complete its own round would make every
//! fuzz input of that shape crash before it tests anything).

#[test]
fn every_fixture_shape_completes_its_round() {
    for shape in 0..=u8::MAX {
        let f = sealroom_fuzz::fixture(shape);
        assert!(!f.uploads.is_empty(), "shape {shape}");
    }
}
