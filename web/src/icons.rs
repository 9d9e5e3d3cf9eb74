//! Inline SVG icons (no icon font, nothing fetched): 24-unit paths stroked with the text
//! colour, hidden from screen readers (their buttons carry labels).

use leptos::prelude::*;

/// The path data of each icon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icon {
    /// A plus: new chat.
    Plus,
    /// Two sheets: copy.
    Copy,
    /// A pencil: edit, rename.
    Edit,
    /// A bin: delete.
    Trash,
    /// A star outline: pin.
    Star,
    /// A filled star: unpin.
    StarFilled,
    /// A circular arrow: regenerate.
    Refresh,
    /// A left chevron: previous version.
    Left,
    /// A right chevron: next version.
    Right,
    /// A cog: settings.
    Gear,
    /// Three lines: the conversation list.
    Menu,
    /// A filled square: stop.
    Stop,
    /// An arrow up: send.
    Send,
    /// A cross: close.
    Close,
    /// A sheet with a folded corner: documents.
    Document,
    /// A framed landscape: attach images.
    Image,
}

impl Icon {
    /// The SVG path of the icon.
    fn path(self) -> &'static str {
        match self {
            Icon::Plus => "M12 5v14M5 12h14",
            Icon::Copy => "M9 9h10v10H9zM5 15V5h10",
            Icon::Edit => "M4 20h4L19 9l-4-4L4 16v4zM13.5 6.5l4 4",
            Icon::Trash => "M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
            Icon::Star | Icon::StarFilled => "M12 3.5l2.6 5.3 5.9.9-4.3 4.1 1 5.8-5.2-2.7-5.2 2.7 1-5.8-4.3-4.1 5.9-.9z",
            Icon::Refresh => "M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7",
            Icon::Left => "M15 6l-6 6 6 6",
            Icon::Right => "M9 6l6 6-6 6",
            Icon::Gear => "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM19.4 13a7.6 7.6 0 0 0 0-2l2-1.6-2-3.4-2.4 1a7.4 7.4 0 0 0-1.7-1L15 3h-4l-.4 2.5a7.4 7.4 0 0 0-1.7 1l-2.4-1-2 3.4 2 1.6a7.6 7.6 0 0 0 0 2l-2 1.6 2 3.4 2.4-1a7.4 7.4 0 0 0 1.7 1L11 21h4l.4-2.5a7.4 7.4 0 0 0 1.7-1l2.4 1 2-3.4z",
            Icon::Menu => "M4 6h16M4 12h16M4 18h16",
            Icon::Stop => "M7 7h10v10H7z",
            Icon::Send => "M12 19V5M6 11l6-6 6 6",
            Icon::Close => "M6 6l12 12M18 6L6 18",
            Icon::Document => "M6 3h8l4 4v14H6zM14 3v4h4M9 12h6M9 16h6",
            Icon::Image => "M4 5h16v14H4zM4 16l5-5 4 4 3-3 4 4M15.5 9.5h.01",
        }
    }

    /// Whether the shape is filled rather than stroked.
    fn filled(self) -> bool {
        matches!(self, Icon::StarFilled | Icon::Stop)
    }
}

/// An icon at the text's size.
#[component]
pub fn Svg(icon: Icon) -> impl IntoView {
    let fill = if icon.filled() { "currentColor" } else { "none" };
    view! {
        <svg class="svg-icon" viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false"
            fill=fill stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
            <path d=icon.path()/>
        </svg>
    }
}
