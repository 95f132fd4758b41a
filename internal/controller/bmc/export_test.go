package bmc

// Backoff is backoff, for tests.
var Backoff = backoff
