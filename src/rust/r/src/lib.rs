use extendr_api::prelude::*; #[extendr] fn hello() -> i32 { rustgpu_core::hello() } extendr_module! { mod rustgpu; fn hello; }
