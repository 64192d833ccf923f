package frontdoor

// Windows has no O_NOFOLLOW: openOutput's Lstat before and SameFile after
// the open refuse a path that is, or became, a link.
const nofollow = 0

func isLoop(error) bool { return false }
