//! `[metrics]`: where the Prometheus textfile goes.

use super::{at, Checked};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    textfile: PathBuf,
}

/// `[metrics] textfile`: a file path ending in `.prom`. The node exporter's textfile collector
/// reads only `*.prom` files; anything else would be written and never read.
pub(super) fn textfile(m: RawMetrics) -> Checked<PathBuf> {
    let t = m.textfile;
    if t.file_name().is_none() || t.parent().is_none() || t.extension().is_none_or(|e| e != "prom")
    {
        return Err(at(
            "metrics.textfile",
            format!(
                "{:?} is not a file path ending in .prom (the node exporter's textfile \
                 collector reads only *.prom files)",
                t
            ),
        ));
    }
    Ok(t)
}
