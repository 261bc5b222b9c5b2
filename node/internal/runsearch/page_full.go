package runsearch

// FullPageToken is MLflow's token after a run search page: its store hands
// one out whenever a page is full, even when nothing follows (the next
// call then answers no runs and no token), and clients expect that. It is
// the token of the item after page, for a page that token started.
func FullPageToken(token string, pageLen, maxResults int) string {
	if pageLen < maxResults {
		return ""
	}
	offset, err := decodePageToken(token)
	if err != nil {
		return ""
	}
	return encodePageToken(offset + pageLen)
}
