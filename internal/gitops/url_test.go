package gitops

import "testing"

func TestNormalizeURLMatchesEveryFormOfOneRepository(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"https://github.com/Org/Repo.git", "github.com/org/repo"},
		{"https://github.com/org/repo", "github.com/org/repo"},
		{"https://github.com/org/repo/", "github.com/org/repo"},
		{"http://user:token@github.com:443/org/repo.git", "github.com/org/repo"},
		{"git@github.com:org/repo.git", "github.com/org/repo"},
		{"github.com:org/repo", "github.com/org/repo"},
		{"ssh://git@github.com/org/repo.git", "github.com/org/repo"},
		{"ssh://git@gitlab.example.com:2222/group/sub/repo.git", "gitlab.example.com/group/sub/repo"},
		{"https://gitlab.example.com/group/sub/repo", "gitlab.example.com/group/sub/repo"},
		{"git://example.com/repo.git", "example.com/repo"},
		{"file:///srv/git/repo.git", "/srv/git/repo"},
		{"/srv/git/repo.git", "/srv/git/repo"},
		{"/srv/git/../git/repo", "/srv/git/repo"},
		{"  https://example.com/a/b.git  ", "example.com/a/b"},
	} {
		if got := NormalizeURL(tc.in); got != tc.want {
			t.Errorf("NormalizeURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNormalizeURLKeepsDifferentRepositoriesApart(t *testing.T) {
	for _, pair := range [][2]string{
		{"https://github.com/org/repo", "https://github.com/org/repo2"},
		{"https://github.com/org/repo", "https://gitlab.com/org/repo"},
		{"git@github.com:org/repo.git", "git@github.com:other/repo.git"},
	} {
		if NormalizeURL(pair[0]) == NormalizeURL(pair[1]) {
			t.Errorf("%q and %q normalize to the same %q", pair[0], pair[1], NormalizeURL(pair[0]))
		}
	}
}

func TestTransportOfURL(t *testing.T) {
	for _, tc := range []struct {
		in         string
		ssh, local bool
		user       string
	}{
		{in: "git@github.com:org/repo.git", ssh: true, user: "git"},
		{in: "deploy@host:repo", ssh: true, user: "deploy"},
		{in: "ssh://bot@host:2222/repo", ssh: true, user: "bot"},
		{in: "ssh://host/repo", ssh: true, user: "git"},
		{in: "https://github.com/org/repo"},
		{in: "file:///srv/repo", local: true},
		{in: "/srv/repo", local: true},
		{in: "./repo", local: true},
		{in: "repo", local: true},
		{in: "~/repo", local: true},
		{in: "File:///srv/repo", local: true},
		{in: "http://host/repo"},
		{in: "git://host/repo"},
	} {
		if IsSSH(tc.in) != tc.ssh || IsLocal(tc.in) != tc.local {
			t.Errorf("%q: IsSSH=%v IsLocal=%v, want %v %v", tc.in, IsSSH(tc.in), IsLocal(tc.in), tc.ssh, tc.local)
		}
		if tc.ssh && sshUser(tc.in) != tc.user {
			t.Errorf("%q: ssh user %q, want %q", tc.in, sshUser(tc.in), tc.user)
		}
	}
}
