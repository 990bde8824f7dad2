//! The scenarios, each an async function generic over the
//! [`AppUnderTest`](super::AppUnderTest) it runs against; the test names
//! of [`framework_scenarios!`](crate::framework_scenarios).

mod dbsc;
mod layer;
mod peers;

pub use dbsc::*;
pub use layer::*;
pub use peers::*;
