//! Integration tests: one binary, real server processes over real HTTP.

mod access;
mod admin;
mod audit;
mod auth;
mod browser;
mod chat;
mod common;
mod conversations;
mod doc_files;
mod documents;
mod downloads;
mod errors;
mod fake_hub;
mod fakes;
mod fuzz;
mod house_rules;
mod lifecycle;
mod limits;
mod openai_compat;
mod providers;
mod real_model;
mod rerank;
mod two_factor;
mod ui;
mod ui_documents;
mod ui_security;
