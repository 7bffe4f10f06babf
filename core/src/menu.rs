//! Menus degraded to numbered text, and mapping a numeric reply back.
//!
//! When a list picker, buttons, quick replies or a time picker is turned into
//! numbered text, fitting records a [`Menu`]. The host keeps the latest menu per
//! conversation; when the customer answers "2", [`Menu::resolve`] finds item 2 so
//! the application receives the postback it would have received from a native
//! button.
//!
//! Native quick replies record a menu too, resolved by label only: on channels
//! where a quick reply comes back as the text the customer tapped (Teams'
//! `imBack`), that text becomes the reply's postback.

use serde::{Deserialize, Serialize};

/// A numbered menu sent as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Menu {
    /// The options, numbered from 1.
    pub options: Vec<MenuOption>,
    /// The numbers were never shown: only an exact label picks an option.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub labels_only: bool,
}

/// One numbered option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuOption {
    /// The number shown to the customer.
    pub number: u32,
    /// The label shown.
    pub title: String,
    /// The postback payload it stands for.
    pub payload: String,
}

impl Menu {
    /// Adds an option and returns its number.
    pub fn push(&mut self, title: &str, payload: &str) -> u32 {
        let number = self.options.len() as u32 + 1;
        self.options.push(MenuOption {
            number,
            title: title.to_string(),
            payload: payload.to_string(),
        });
        number
    }

    /// A menu of choices shown natively, without numbers: only their labels
    /// pick them.
    ///
    /// ```
    /// use patchbay_core::menu::Menu;
    /// let m = Menu::labels([("Yes", "YES"), ("No", "NO")]);
    /// assert_eq!(m.resolve("no").unwrap().payload, "NO");
    /// assert!(m.resolve("2").is_none());
    /// ```
    pub fn labels<'a>(choices: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut menu = Menu {
            labels_only: true,
            ..Menu::default()
        };
        for (title, payload) in choices {
            menu.push(title, payload);
        }
        menu
    }

    /// True when there is nothing to choose.
    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }

    /// The option a customer's reply picks: its number (`"2"`, `"2."`, `"#2"`,
    /// `" 2) "`) or its exact label, ignoring case. Anything else is `None`.
    ///
    /// ```
    /// use patchbay_core::menu::Menu;
    /// let mut m = Menu::default();
    /// m.push("Billing", "BILLING");
    /// m.push("Support", "SUPPORT");
    /// assert_eq!(m.resolve(" 2. ").unwrap().payload, "SUPPORT");
    /// assert_eq!(m.resolve("billing").unwrap().payload, "BILLING");
    /// assert!(m.resolve("3").is_none());
    /// assert!(m.resolve("2 please call me").is_none());
    /// ```
    pub fn resolve(&self, reply: &str) -> Option<&MenuOption> {
        let trimmed = reply.trim();
        let digits = trimmed
            .trim_start_matches('#')
            .trim_end_matches(['.', ')'])
            .trim();
        if let (false, Ok(n)) = (self.labels_only, digits.parse::<u32>()) {
            return self.options.iter().find(|o| o.number == n);
        }
        self.options
            .iter()
            .find(|o| !o.title.is_empty() && o.title.eq_ignore_ascii_case(trimmed))
    }
}
