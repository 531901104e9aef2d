//! Every relative link in README.md and docs/*.md leads somewhere.
//!
//! The README was split into pages under docs/, and sections will keep moving between them. On
//! GitHub a link to a moved file is a 404, and a link to a renamed or moved heading silently lands
//! at the top of the page. This test reads each page as GitHub does (fenced code blocks and
//! inline code hold no links or headings) and fails listing every link that is not http(s) or
//! mailto and either names a file or folder that does not exist (relative to the linking page)
//! or has an `#anchor` that no heading of the linked Markdown file produces by GitHub's rules.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// README.md, then every docs/*.md in name order.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("read a docs/ entry").path())
        .filter(|path| path.extension() == Some(OsStr::new("md")))
        .collect();
    pages.sort();
    pages.insert(0, root.join("README.md"));
    pages
}

/// The run of three or more backticks or tildes a fence line starts with.
fn fence_marker(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    let first = trimmed.chars().next()?;
    if first != '`' && first != '~' {
        return None;
    }
    let run: String = trimmed.chars().take_while(|&c| c == first).collect();
    (run.len() >= 3).then_some(run)
}

/// The text with the lines of fenced code blocks emptied (so line numbers stay the same).
fn without_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<String> = None;
    for line in text.lines() {
        let marker = fence_marker(line);
        let keep = match fence.take() {
            Some(open) => {
                // A closing fence: the same character, at least as many, nothing after it.
                let closes = marker
                    .is_some_and(|m| m.starts_with(&open) && line.trim()[m.len()..].is_empty());
                if !closes {
                    fence = Some(open);
                }
                false
            }
            None => {
                fence = marker;
                fence.is_none()
            }
        };
        if keep {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// How many backticks start at `at`.
fn backticks_at(chars: &[char], at: usize) -> usize {
    chars[at..].iter().take_while(|&&c| c == '`').count()
}

/// Whether the line that `rest` starts with is blank, which ends a paragraph.
fn line_is_blank(rest: &[char]) -> bool {
    rest.iter()
        .take_while(|&&c| c != '\n')
        .all(|c| c.is_whitespace())
}

/// Where the run of exactly `run` backticks that closes a code span starts, if one comes
/// before the paragraph ends.
fn closing_backticks(chars: &[char], from: usize, run: usize) -> Option<usize> {
    let mut j = from;
    while j < chars.len() {
        if chars[j] == '`' {
            let n = backticks_at(chars, j);
            if n == run {
                return Some(j);
            }
            j += n;
        } else if chars[j] == '\n' && line_is_blank(&chars[j + 1..]) {
            return None;
        } else {
            j += 1;
        }
    }
    None
}

/// The text with every inline code span blanked out (its newlines kept).
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = backticks_at(&chars, i);
        match closing_backticks(&chars, i + run, run) {
            Some(close) => {
                let end = close + run;
                out.extend(
                    chars[i..end]
                        .iter()
                        .map(|&c| if c == '\n' { '\n' } else { ' ' }),
                );
                i = end;
            }
            // A lone backtick is just a character.
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

/// A link's target and the line it is on.
struct Link {
    line: usize,
    target: String,
}

/// Every `[text](target)` and `![alt](target)` outside code.
fn links(text: &str) -> Vec<Link> {
    let prose = without_code_spans(&without_fences(text));
    prose
        .match_indices("](")
        .map(|(at, _)| {
            let rest = &prose[at + 2..];
            let end = rest
                .find(|c: char| c == ')' || c.is_whitespace())
                .unwrap_or(rest.len());
            Link {
                line: prose[..at].matches('\n').count() + 1,
                target: rest[..end]
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string(),
            }
        })
        .collect()
}

/// The text of an ATX heading (`## Title`), without its `#`s.
fn heading_text(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let hashes = trimmed.chars().take_while(|&c| c == '#').count();
    let rest = &trimmed[hashes..];
    let is_heading = (1..=6).contains(&hashes) && (rest.is_empty() || rest.starts_with(' '));
    is_heading.then(|| rest.trim().trim_end_matches('#').trim().to_string())
}

/// GitHub's anchor for a heading: backticks and link targets dropped, lower case, each space a
/// `-`, and every other character that is not a letter, a digit, `-` or `_` removed.
fn slug(heading: &str) -> String {
    let mut text = heading.replace('`', "");
    while let Some(start) = text.find("](") {
        let Some(len) = text[start..].find(')') else {
            break;
        };
        text.replace_range(start..start + len + 1, "");
    }
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings outside fenced code; a repeated heading gets `-1`, `-2`, …
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for line in without_fences(text).lines() {
        let Some(heading) = heading_text(line) else {
            continue;
        };
        let base = slug(&heading);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.push(if *count == 0 {
            base
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// Why `target`, linked from `page`, leads nowhere; None when it leads somewhere (or is not a
/// relative link).
fn broken(page: &Path, target: &str) -> Option<&'static str> {
    if ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| target.starts_with(*scheme))
    {
        return None;
    }
    if target.is_empty() {
        return Some("empty link");
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        page.to_path_buf()
    } else {
        page.parent().expect("a page's folder").join(path)
    };
    if !file.exists() {
        return Some("no such file or folder");
    }
    let anchor = anchor?;
    if file.extension() != Some(OsStr::new("md")) {
        return None;
    }
    let text = fs::read_to_string(file).expect("read a linked page");
    if anchors(&text).contains(&anchor.to_string()) {
        None
    } else {
        Some("no heading of that page has this anchor")
    }
}

#[test]
fn every_relative_link_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken_links = Vec::new();
    for page in pages(root) {
        let text = fs::read_to_string(&page).expect("read a page");
        let name = page
            .strip_prefix(root)
            .unwrap_or(page.as_path())
            .display()
            .to_string();
        for link in links(&text) {
            if let Some(reason) = broken(&page, &link.target) {
                broken_links.push(format!("{name}:{}: ({}) {reason}", link.line, link.target));
            }
        }
    }
    assert!(
        broken_links.is_empty(),
        "{} broken links (file:line: (link) reason):\n{}",
        broken_links.len(),
        broken_links.join("\n")
    );
}

/// The checker itself: it finds a missing file, a missing anchor and a missing self-anchor,
/// takes no link from code, and numbers repeated headings as GitHub does.
#[test]
fn the_checker_finds_broken_links() {
    let text = concat!(
        "# T\n",
        "## Same\n",
        "## Same\n",
        "[a](no-such-file.md) [b](README.md#no-such-anchor) [c](docs/)\n",
        "`[d](in-code.md)` ``a ` [g](in-code.md)`` [e](https://example.com/x)\n",
        "```sh\n",
        "[f](in-fence.md)\n",
        "# not a heading\n",
        "```\n",
    );
    let targets: Vec<String> = links(text).into_iter().map(|link| link.target).collect();
    assert_eq!(
        targets,
        [
            "no-such-file.md",
            "README.md#no-such-anchor",
            "docs/",
            "https://example.com/x"
        ]
    );
    assert_eq!(anchors(text), ["t", "same", "same-1"]);
    assert_eq!(
        slug("`fxpipe run` — the daily job"),
        "fxpipe-run--the-daily-job"
    );

    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    assert!(broken(&readme, "no-such-file.md").is_some());
    assert!(broken(&readme, "README.md#no-such-anchor").is_some());
    assert!(broken(&readme, "#no-such-anchor").is_some());
    assert!(broken(&readme, "README.md#quick-start").is_none());
    assert!(broken(&readme, "#quick-start").is_none());
    assert!(broken(&readme, "docs/").is_none());
    assert!(broken(&readme, "https://example.com/x").is_none());
}
