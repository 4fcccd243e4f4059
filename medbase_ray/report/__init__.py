"""The run report (`<run>/report.html`, `medbase report <run>`) and the generated config
reference (`medbase config docs`)."""
