package content

import "strings"

// DeploymentID names what an agent deploys (BundleDeployment
// spec.deploymentID): a contents ID, ":", the hex hash of the deployment
// options. The hash is always last and never contains ':', so the contents
// ID is everything before the last ':', whatever spec.contentsID holds.
// Every reader parses it here: readers that split at the first ':' and ones
// that split at the last disagreed on a contents ID with a ':'.
type DeploymentID string

// NewDeploymentID joins a contents ID and an options hash.
func NewDeploymentID(contentsID, optionsHash string) DeploymentID {
	return DeploymentID(contentsID + ":" + optionsHash)
}

// ContentsID is the Content the deployment renders; an ID without ':' (as
// written before options were hashed) is all contents ID.
func (d DeploymentID) ContentsID() string {
	if i := strings.LastIndexByte(string(d), ':'); i >= 0 {
		return string(d[:i])
	}
	return string(d)
}

// OptionsHash is the hash of the deployment options, "" if there is none.
func (d DeploymentID) OptionsHash() string {
	if i := strings.LastIndexByte(string(d), ':'); i >= 0 {
		return string(d[i+1:])
	}
	return ""
}

// Short is d for messages: the contents ID and the first 12 characters of
// the options hash.
func (d DeploymentID) Short() string {
	if h := d.OptionsHash(); len(h) > 12 {
		return d.ContentsID() + ":" + h[:12]
	}
	return string(d)
}
