library(testthat)
library(rustgpu)

test_check("rustgpu")
