//! placeholder until the S3 room lands
use super::StoredPath;
use std::path::Path;
#[derive(Debug, Clone)]
pub struct S3Settings;
#[derive(Debug, Clone)]
pub struct S3Store;
#[derive(Debug, thiserror::Error)]
#[error("s3")]
pub struct S3Error;
impl S3Store {
    pub async fn connect(_s: &S3Settings) -> Result<Self, S3Error> {
        Err(S3Error)
    }
    pub async fn download(&self, _p: &StoredPath, _to: &Path) -> Result<bool, S3Error> {
        Err(S3Error)
    }
}
mod backend;
pub(crate) use backend::S3Backend;
pub struct ObjectInfo {
    pub size: u64,
    pub sha256: Option<String>,
}
impl S3Store {
    pub async fn head(&self, _p: &StoredPath) -> Result<Option<ObjectInfo>, S3Error> {
        Err(S3Error)
    }
    pub async fn put_file(
        &self,
        _p: &StoredPath,
        _f: &Path,
        _s: u64,
        _h: &str,
    ) -> Result<(), S3Error> {
        Err(S3Error)
    }
    pub async fn delete(&self, _p: &StoredPath) -> Result<(), S3Error> {
        Err(S3Error)
    }
    pub async fn probe(&self) -> Result<(), S3Error> {
        Err(S3Error)
    }
}
