// Package plugins holds Eddy's example plugins (one directory each; see
// README.md) and their conformance test: the corpus in testdata/corpus
// runs every example through the broker's real sandbox and compares the
// results with golden outputs. The golden RBV1 inputs there (*.rbv1) pin
// the ABI layout for SDKs in other languages.
package plugins
