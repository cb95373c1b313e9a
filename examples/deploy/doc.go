// Package deploy holds no code: its tests check the systemd units and the
// Kubernetes manifest beside it.
package deploy
