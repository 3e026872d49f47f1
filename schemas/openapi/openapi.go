// Package openapi embeds the OpenAPI 3 descriptions of the project's HTTP
// APIs, so a binary serves the exact document its tests check answers against.
package openapi

import _ "embed"

// Leaderboard is leaderboard.yaml: every endpoint of the leaderboard API.
//
//go:embed leaderboard.yaml
var Leaderboard []byte
