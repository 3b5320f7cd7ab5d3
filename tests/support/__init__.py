"""What the tests share besides fixtures: paths, data slices, real servers, small helpers."""
