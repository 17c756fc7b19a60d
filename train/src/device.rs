//! The Burn backend, chosen at run time.

use burn::prelude::*;

/// Which Burn backend trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// burn-flex, the pure-Rust CPU backend (default).
    Flex,
    /// burn-ndarray (deprecated in Burn 0.22; needs the `ndarray` cargo feature).
    Ndarray,
    /// burn-wgpu (needs the `wgpu` cargo feature). On machines without a GPU it runs on Mesa's
    /// software Vulkan (lavapipe), which must be named explicitly.
    Wgpu,
}

/// The Burn device for `choice` (without autodiff).
///
/// # Errors
/// A message naming the cargo feature to enable when the backend was not compiled in.
pub fn select_device(choice: DeviceChoice) -> Result<Device, String> {
    match choice {
        DeviceChoice::Flex => Ok(Device::flex()),
        DeviceChoice::Ndarray => ndarray_device(),
        DeviceChoice::Wgpu => wgpu_device(),
    }
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)]
fn ndarray_device() -> Result<Device, String> {
    Ok(Device::ndarray())
}

#[cfg(not(feature = "ndarray"))]
fn ndarray_device() -> Result<Device, String> {
    Err("this build has no ndarray backend: rebuild with `--features ndarray`".into())
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, String> {
    // A software adapter (lavapipe) is only used when named; honour an explicit override,
    // else take the default adapter, which is a real GPU when there is one.
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, String> {
    Err("this build has no wgpu backend: rebuild with `--features wgpu`".into())
}
