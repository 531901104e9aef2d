//! Whether the lake can be read and written, without touching a table: `fxpipe doctor`.
//!
//! The probe object lives under [`PROBE_PREFIX`], a `_`-prefixed folder like `_reports`, which
//! Delta, Spark, Athena and DuckDB skip when they list a table or the lake, so even a probe a
//! crash left behind is never read as data.

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};

use super::{Lake, StorageError};

/// Where probe objects are written, under the lake root.
pub const PROBE_PREFIX: &str = "_doctor";

/// Lists the lake's root (one request).
pub async fn read(lake: &Lake) -> Result<(), StorageError> {
    lake.store()
        .list_with_delimiter(None)
        .await
        .map_err(|source| lake.store_error("list", "", source))?;
    Ok(())
}

/// Writes a small object, reads it back and deletes it. The name is random, so probes of two
/// doctors at once do not meet. On a local lake the folder the probe needed is removed again
/// when empty (object stores have no folders).
pub async fn write(lake: &Lake) -> Result<(), StorageError> {
    let relative = format!("{PROBE_PREFIX}/probe-{:016x}", rand::random::<u64>());
    let location = StorePath::from(relative.as_str());
    let payload = b"fxpipe doctor write probe\n";
    lake.store()
        .put(&location, PutPayload::from_static(payload))
        .await
        .map_err(|source| lake.store_error("put", &relative, source))?;
    let read_back = async {
        lake.store()
            .get(&location)
            .await
            .map_err(|source| lake.store_error("get", &relative, source))?
            .bytes()
            .await
            .map_err(|source| lake.store_error("get", &relative, source))
    }
    .await;
    let deleted = lake
        .store()
        .delete(&location)
        .await
        .map_err(|source| lake.store_error("delete", &relative, source));
    if let Ok(folder) = lake.url_of(&format!("{PROBE_PREFIX}/")).to_file_path() {
        // Fails, harmlessly, when another probe is still in there.
        let _ = std::fs::remove_dir(folder);
    }
    if read_back?.as_ref() != payload {
        return Err(lake.store_error(
            "get",
            &relative,
            object_store::Error::Generic {
                store: "probe",
                source: "the object read back differs from the one written".into(),
            },
        ));
    }
    deleted
}
