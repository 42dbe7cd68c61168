// Forwards R's routine registration to the Rust static library, so the linker
// keeps it (the extendr template's entry point).
void R_init_rustgpu_extendr(void *dll);

void R_init_rustgpu(void *dll) {
    R_init_rustgpu_extendr(dll);
}
