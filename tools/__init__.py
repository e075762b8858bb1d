"""Programs about the product: data generators, benchmarks and load tests. They import the apps; no app imports them."""
