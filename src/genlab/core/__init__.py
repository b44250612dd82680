"""The vocabulary every layer shares, depending on nothing else of genlab: errors, files and run folders, the
config, the family registry, the generator protocols and sampling parameters, samples, weights, model cards."""
