package eventcontract

// RepoRoot lets the external test find the contract packages' sources.
var RepoRoot = repoRoot
