//! Who is withheld? Being written.
