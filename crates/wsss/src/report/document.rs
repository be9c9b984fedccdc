//! A report as a list of blocks, rendered twice: Markdown (images linked beside it) and a
//! standalone HTML page (images embedded as `data:` URIs, so it opens with no server).

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

/// One piece of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading; level 1 is the title.
    Heading { level: u8, text: String },
    /// A paragraph of plain text (inline `code` spans allowed).
    Paragraph(String),
    /// A table: header cells and rows of cells (all plain text).
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A PNG picture, by file name relative to the report's folder.
    Image { file: String, alt: String },
}

/// An ordered list of blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    blocks: Vec<Block>,
}

impl Document {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a heading.
    pub fn heading(&mut self, level: u8, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Heading {
            level: level.clamp(1, 6),
            text: text.into(),
        });
        self
    }

    /// Appends a paragraph.
    pub fn paragraph(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Paragraph(text.into()));
        self
    }

    /// Appends a table; rows shorter than the header are padded with empty cells.
    pub fn table(&mut self, header: Vec<String>, rows: Vec<Vec<String>>) -> &mut Self {
        let width = header.len();
        let rows = rows
            .into_iter()
            .map(|mut row| {
                row.resize(width.max(row.len()), String::new());
                row
            })
            .collect();
        self.blocks.push(Block::Table { header, rows });
        self
    }

    /// Appends a picture (a PNG file in the report's folder).
    pub fn image(&mut self, file: impl Into<String>, alt: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Image {
            file: file.into(),
            alt: alt.into(),
        });
        self
    }

    /// The blocks, in order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// GitHub-flavoured Markdown; pictures are linked by relative file name.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        for block in &self.blocks {
            match block {
                Block::Heading { level, text } => {
                    let _ = writeln!(md, "{} {text}\n", "#".repeat(*level as usize));
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(md, "{text}\n");
                }
                Block::Table { header, rows } => {
                    md.push_str(&markdown_row(header));
                    md.push_str(&markdown_row(&vec!["---".to_string(); header.len()]));
                    for row in rows {
                        md.push_str(&markdown_row(row));
                    }
                    md.push('\n');
                }
                Block::Image { file, alt } => {
                    let _ = writeln!(md, "![{}]({file})\n", alt.replace(']', ")"));
                }
            }
        }
        md
    }

    /// A standalone HTML page. Each picture is read from `folder` and embedded as a
    /// base64 `data:` URI; a missing picture becomes a visible note instead of a broken link.
    pub fn to_html(&self, title: &str, folder: &Path) -> String {
        let mut html = String::new();
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
            escape(title)
        );
        for block in &self.blocks {
            match block {
                Block::Heading { level, text } => {
                    let _ = writeln!(html, "<h{level}>{}</h{level}>", inline(text));
                }
                Block::Paragraph(text) => {
                    let _ = writeln!(html, "<p>{}</p>", inline(text));
                }
                Block::Table { header, rows } => {
                    html.push_str("<table>\n<thead><tr>");
                    for cell in header {
                        let _ = write!(html, "<th>{}</th>", inline(cell));
                    }
                    html.push_str("</tr></thead>\n<tbody>\n");
                    for row in rows {
                        html.push_str("<tr>");
                        for cell in row {
                            let _ = write!(html, "<td>{}</td>", inline(cell));
                        }
                        html.push_str("</tr>\n");
                    }
                    html.push_str("</tbody>\n</table>\n");
                }
                Block::Image { file, alt } => match std::fs::read(folder.join(file)) {
                    Ok(bytes) => {
                        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                        let _ = writeln!(
                            html,
                            "<figure><img src=\"data:image/png;base64,{data}\" alt=\"{}\">\
                             <figcaption>{}</figcaption></figure>",
                            escape(alt),
                            inline(alt)
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(
                            html,
                            "<p class=\"missing\">picture {} could not be read: {}</p>",
                            escape(file),
                            escape(&e.to_string())
                        );
                    }
                },
            }
        }
        html.push_str("</body>\n</html>\n");
        html
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;\
padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid \
#ccc;padding:4px 8px;text-align:right}th{background:#f0f0f0}td:first-child,th:first-child\
{text-align:left}img{max-width:100%;image-rendering:pixelated}figure{margin:1em 0}\
figcaption{color:#555;font-size:90%}code{background:#f4f4f4;padding:0 3px}\
.missing{color:#b00}";

fn markdown_row(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Escapes text and turns Markdown `code` spans and **bold** into HTML.
fn inline(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::with_capacity(escaped.len());
    let mut code = false;
    let mut bold = false;
    let mut rest = escaped.as_str();
    while let Some(ch) = rest.chars().next() {
        if ch == '`' {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest = &rest[1..];
        } else if !code && rest.starts_with("**") {
            out.push_str(if bold { "</b>" } else { "<b>" });
            bold = !bold;
            rest = &rest[2..];
        } else {
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</b>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Document {
        let mut doc = Document::new();
        doc.heading(1, "Report")
            .paragraph("mIoU of `cam` <b>")
            .table(
                vec!["method".into(), "mIoU".into()],
                vec![vec!["a|b".into(), "50.0".into()], vec!["c".into()]],
            )
            .image("grid.png", "overlays");
        doc
    }

    #[test]
    fn markdown_has_table_rows_padded_and_pipes_escaped() {
        let md = sample().to_markdown();
        assert!(md.starts_with("# Report\n"));
        assert!(md.contains("| method | mIoU |\n| --- | --- |\n| a\\|b | 50.0 |\n| c |  |\n"));
        assert!(md.contains("![overlays](grid.png)"));
    }

    #[test]
    fn html_escapes_text_and_embeds_pictures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("grid.png"), [137u8, 80, 78, 71]).unwrap();
        let html = sample().to_html("R & D", dir.path());
        assert!(html.contains("<title>R &amp; D</title>"));
        assert!(html.contains("<p>mIoU of <code>cam</code> &lt;b&gt;</p>"));
        assert!(html.contains("<td>a|b</td><td>50.0</td>"));
        assert!(html.contains("data:image/png;base64,iVBORw=="));
    }

    #[test]
    fn html_reports_a_missing_picture() {
        let dir = tempfile::tempdir().unwrap();
        let html = sample().to_html("R", dir.path());
        assert!(html.contains("class=\"missing\""));
        assert!(!html.contains("data:image"));
    }
}
