// Package examples holds the client examples of streammgrd (Python, Node.js
// and grpcurl, in the subdirectories) and, in e2e_test.go, the end-to-end
// test that runs every one of them against a real daemon. It has no Go API.
//
// Set up the clients with examples/setup.sh, then run go test ./examples/.
package examples
