"""Where articles come from: files on disk (`files`), HTML pages (`html`) and web links (`fetch`)."""
