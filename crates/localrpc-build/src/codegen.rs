//! Turns an [`InterfaceModel`] into Rust tokens: types, the error enum, the server trait
//! with its registration glue, and the typed client. Every path in the output is fully
//! qualified (`::std::...`, `::serde::...`, `::localrpc::...`), so the generated items do
//! not depend on what the including module imports.

use std::str::FromStr;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

use crate::model::{
    Adapter, EnumModel, ErrorModel, FieldModel, InterfaceModel, MethodModel, RustType, Streaming,
    StructModel, TypeModel, Upgrade,
};

/// What to generate besides the types and the error enum.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts {
    pub(crate) server: bool,
    pub(crate) client: bool,
}

/// The tokens of one interface's file.
pub(crate) fn generate(model: &InterfaceModel, idl_text: &str, parts: Parts) -> TokenStream {
    let name = &model.name;
    let description = raw_string(idl_text);
    let interface_doc = if model.doc.is_empty() {
        quote!()
    } else {
        let lines = doc_lines(&model.doc);
        quote! {
            #[doc = ""]
            #lines
        }
    };
    let const_doc = format!(" The varlink interface `{name}`.");
    let types = model.types.iter().map(|t| match t {
        TypeModel::Struct(s) => struct_tokens(s),
        TypeModel::Enum(e) => enum_tokens(e),
    });
    let error = error_tokens(model);
    let support = support_tokens(model, parts);
    let server = if parts.server {
        server_tokens(model)
    } else {
        quote!()
    };
    let client = if parts.client {
        client_tokens(model)
    } else {
        quote!()
    };
    quote! {
        #[doc = #const_doc]
        #interface_doc
        pub const INTERFACE_NAME: &str = #name;

        /// The interface definition, verbatim (served by `GetInterfaceDescription`).
        pub const INTERFACE_DESCRIPTION: &str = #description;

        #(#types)*
        #error
        #server
        #client
        #support
    }
}

/// `r#"..."#` with enough hashes, so the IDL stays readable in the generated file.
fn raw_string(text: &str) -> Literal {
    let mut hashes = String::from("#");
    while text.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    let source = format!("r{hashes}\"{text}\"{hashes}");
    Literal::from_str(&source).unwrap_or_else(|_| Literal::string(text))
}

fn ident(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => Ident::new(name, Span::call_site()),
    }
}

/// IDL doc lines as `#[doc]` attributes. Lines that rustdoc would take for an indented code
/// block (and so for a doctest) are unindented, and code fences are defused.
fn doc_lines(doc: &[String]) -> TokenStream {
    let lines = doc.iter().map(|line| {
        let line = if line.starts_with("    ") || line.starts_with('\t') {
            line.trim_start()
        } else {
            line
        };
        let line = link_urls(&line.replace("```", "'''"));
        let text = if line.is_empty() {
            String::new()
        } else {
            format!(" {line}")
        };
        quote!(#[doc = #text])
    });
    quote!(#(#lines)*)
}

/// Bare URLs become autolinks (`<https://...>`), which rustdoc wants.
fn link_urls(line: &str) -> String {
    line.split(' ')
        .map(|word| {
            if word.starts_with("http://") || word.starts_with("https://") {
                format!("<{word}>")
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The IDL doc, or `fallback` when there is none.
fn doc_or(doc: &[String], fallback: &str) -> TokenStream {
    if doc.is_empty() {
        let text = format!(" {fallback}");
        quote!(#[doc = #text])
    } else {
        doc_lines(doc)
    }
}

fn type_tokens(ty: &RustType) -> TokenStream {
    match ty {
        RustType::Bool => quote!(bool),
        RustType::Int => quote!(i64),
        RustType::Float => quote!(f64),
        RustType::String => quote!(::std::string::String),
        RustType::Value => quote!(::serde_json::Value),
        RustType::Set => quote!(::std::collections::BTreeSet<::std::string::String>),
        RustType::Named(name) => {
            let name = ident(name);
            quote!(#name)
        }
        RustType::Vec(inner) => {
            let inner = type_tokens(inner);
            quote!(::std::vec::Vec<#inner>)
        }
        RustType::Map(inner) => {
            let inner = type_tokens(inner);
            quote!(::std::collections::BTreeMap<::std::string::String, #inner>)
        }
        RustType::Option(inner) => {
            let inner = type_tokens(inner);
            quote!(::std::option::Option<#inner>)
        }
        RustType::Boxed(inner) => {
            let inner = type_tokens(inner);
            quote!(::std::boxed::Box<#inner>)
        }
    }
}

/// A struct field with its serde attributes.
fn field_tokens(field: &FieldModel, public: bool, owner: &str) -> TokenStream {
    let doc = doc_or(&field.doc, &format!("`{}` of `{owner}`.", field.wire));
    let name = ident(&field.ident);
    let ty = type_tokens(&field.ty);
    let wire = &field.wire;
    let rename = if crate::names::unraw(&field.ident) == field.wire {
        quote!()
    } else {
        quote!(#[serde(rename = #wire)])
    };
    let optional = if field.optional() {
        quote!(#[serde(default, skip_serializing_if = "::std::option::Option::is_none")])
    } else {
        quote!()
    };
    let adapter = match field.adapter {
        Adapter::None => quote!(),
        Adapter::Set => quote!(#[serde(with = "__localrpc::set")]),
        Adapter::OptionSet => quote!(#[serde(with = "__localrpc::option_set")]),
    };
    let visibility = if public { quote!(pub) } else { quote!() };
    quote! {
        #doc
        #rename
        #optional
        #adapter
        #visibility #name: #ty,
    }
}

fn struct_tokens(s: &StructModel) -> TokenStream {
    let doc = doc_or(&s.doc, &format!("The type `{}`.", s.name));
    let name = ident(&s.name);
    let fields = s.fields.iter().map(|f| field_tokens(f, true, &s.name));
    quote! {
        #doc
        #[derive(::std::fmt::Debug, ::std::clone::Clone, ::std::cmp::PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        pub struct #name {
            #(#fields)*
        }
    }
}

fn enum_tokens(e: &EnumModel) -> TokenStream {
    let doc = doc_or(&e.doc, &format!("The enum `{}`.", e.name));
    let name = ident(&e.name);
    let unknown = ident(&e.unknown);
    let variants = e.variants.iter().map(|v| {
        let doc = doc_or(&v.doc, &format!("`\"{}\"`", v.wire));
        let variant = ident(&v.ident);
        quote!(#doc #variant,)
    });
    let to_str = e.variants.iter().map(|v| {
        let variant = ident(&v.ident);
        let wire = &v.wire;
        quote!(#name::#variant => #wire,)
    });
    let from_str = e.variants.iter().map(|v| {
        let variant = ident(&v.ident);
        let wire = &v.wire;
        quote!(#wire => #name::#variant,)
    });
    quote! {
        #doc
        #[derive(::std::fmt::Debug, ::std::clone::Clone, ::std::cmp::PartialEq, ::std::cmp::Eq, ::std::hash::Hash)]
        #[allow(clippy::enum_variant_names, clippy::upper_case_acronyms)]
        pub enum #name {
            #(#variants)*
            /// A value this version of the interface does not know (sent by a newer peer).
            #unknown(::std::string::String),
        }

        impl #name {
            /// The value as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    #(#to_str)*
                    #name::#unknown(value) => value,
                }
            }
        }

        impl ::std::fmt::Display for #name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for #name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
                let value = <::std::string::String as ::serde::Deserialize>::deserialize(deserializer)?;
                ::std::result::Result::Ok(match value.as_str() {
                    #(#from_str)*
                    _ => #name::#unknown(value),
                })
            }
        }
    }
}

fn error_tokens(model: &InterfaceModel) -> TokenStream {
    let interface = &model.name;
    let other = ident(&model.other_error);
    let doc = format!(
        " The errors of `{interface}`, plus [`Error::{}`] for any other error reply.",
        model.other_error
    );
    let variants = model.errors.iter().map(|e| {
        let doc = doc_or(&e.doc, &format!("The error `{interface}.{}`.", e.name));
        let variant = ident(&e.name);
        if e.fields.is_empty() {
            quote!(#doc #variant,)
        } else {
            let fields = e.fields.iter().map(|f| {
                let doc = doc_or(&f.doc, &format!("`{}` of `{}`.", f.wire, e.name));
                let name = ident(&f.ident);
                let ty = type_tokens(&f.ty);
                quote!(#doc #name: #ty,)
            });
            quote!(#doc #variant { #(#fields)* },)
        }
    });
    let names = model.errors.iter().map(|e| {
        let variant = ident(&e.name);
        let qualified = format!("{interface}.{}", e.name);
        if e.fields.is_empty() {
            quote!(Error::#variant => #qualified,)
        } else {
            quote!(Error::#variant { .. } => #qualified,)
        }
    });
    let into_reply = model.errors.iter().map(|e| error_into_reply(interface, e));
    let from_reply_doc = format!(
        " Decodes an error reply: a known error with well-formed parameters becomes its \
         variant, anything else [`Error::{}`].",
        model.other_error
    );
    let from_reply = model
        .errors
        .iter()
        .map(|e| error_from_reply(interface, &other, e));
    let from_reply_body = if model.errors.is_empty() {
        quote!(Error::#other(reply))
    } else {
        quote! {
            match reply.name.as_str() {
                #(#from_reply)*
                _ => Error::#other(reply),
            }
        }
    };
    quote! {
        #[doc = #doc]
        #[derive(::std::fmt::Debug, ::std::clone::Clone, ::std::cmp::PartialEq)]
        #[allow(clippy::enum_variant_names, clippy::large_enum_variant, clippy::upper_case_acronyms)]
        pub enum Error {
            #(#variants)*
            /// Any other error reply: a standard `org.varlink.service` error (e.g.
            /// `InvalidParameter`), an error of another interface, or one this version does
            /// not know. Kept as it came.
            #other(::localrpc::service::ErrorReply),
        }

        impl Error {
            /// The fully qualified varlink error name.
            pub fn name(&self) -> &str {
                match self {
                    #(#names)*
                    Error::#other(reply) => &reply.name,
                }
            }

            /// The error reply to send.
            pub fn into_reply(self) -> ::localrpc::service::ErrorReply {
                match self {
                    #(#into_reply)*
                    Error::#other(reply) => reply,
                }
            }

            #[doc = #from_reply_doc]
            pub fn from_reply(reply: ::localrpc::service::ErrorReply) -> Self {
                #from_reply_body
            }
        }

        impl ::std::convert::From<::localrpc::service::ErrorReply> for Error {
            fn from(reply: ::localrpc::service::ErrorReply) -> Self {
                Error::from_reply(reply)
            }
        }

        impl ::std::convert::From<Error> for ::localrpc::service::ErrorReply {
            fn from(error: Error) -> Self {
                error.into_reply()
            }
        }

        impl ::std::fmt::Display for Error {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.clone().into_reply(), f)
            }
        }

        impl ::std::error::Error for Error {}
    }
}

fn error_parameters_struct(e: &ErrorModel, derive: TokenStream) -> TokenStream {
    let fields = e.fields.iter().map(|f| field_tokens(f, false, &e.name));
    quote! {
        #[derive(#derive)]
        struct ErrorParameters {
            #(#fields)*
        }
    }
}

fn error_into_reply(interface: &str, e: &ErrorModel) -> TokenStream {
    let variant = ident(&e.name);
    let qualified = format!("{interface}.{}", e.name);
    if e.fields.is_empty() {
        return quote! {
            Error::#variant => ::localrpc::service::ErrorReply::new(#qualified, ::serde_json::Map::new()),
        };
    }
    let names: Vec<Ident> = e.fields.iter().map(|f| ident(&f.ident)).collect();
    let parameters = error_parameters_struct(e, quote!(::serde::Serialize));
    quote! {
        Error::#variant { #(#names),* } => {
            #parameters
            ::localrpc::service::ErrorReply::new(#qualified, ErrorParameters { #(#names),* })
        }
    }
}

fn error_from_reply(interface: &str, other: &Ident, e: &ErrorModel) -> TokenStream {
    let variant = ident(&e.name);
    let qualified = format!("{interface}.{}", e.name);
    if e.fields.is_empty() {
        return quote!(#qualified => Error::#variant,);
    }
    let names: Vec<Ident> = e.fields.iter().map(|f| ident(&f.ident)).collect();
    let parameters = error_parameters_struct(e, quote!(::serde::Deserialize));
    quote! {
        #qualified => {
            #parameters
            let parameters = ::serde_json::Value::Object(reply.parameters.clone());
            match ::serde_json::from_value::<ErrorParameters>(parameters) {
                ::std::result::Result::Ok(ErrorParameters { #(#names),* }) => Error::#variant { #(#names),* },
                ::std::result::Result::Err(_) => Error::#other(reply),
            }
        }
    }
}

fn result_of(output: &Ident) -> TokenStream {
    quote!(::std::result::Result<#output, Error>)
}

fn server_tokens(model: &InterfaceModel) -> TokenStream {
    let interface = &model.name;
    let trait_doc = format!(
        " The server side of `{interface}`: implement it (with plain `async fn`s) and register \
         it with [`interface`]."
    );
    let trait_defaults = " Every method has a default body that answers \
        `org.varlink.service.MethodNotImplemented`: override the methods the service \
        implements; the others stay declared (introspection lists them) but unimplemented.";
    let methods = model.methods.iter().map(|m| {
        let qualified = format!("{interface}.{}", m.name);
        let doc = doc_or(&m.doc, &format!("`{qualified}`."));
        let name = ident(&m.ident);
        let input = ident(&m.input);
        let output = ident(&m.output);
        let result = if m.upgrade == Upgrade::No {
            result_of(&output)
        } else {
            quote!(::std::result::Result<(#output, ::localrpc::service::UpgradeHandler), Error>)
        };
        let sink = if m.streaming == Streaming::No {
            quote!()
        } else {
            let more = if m.streaming == Streaming::Requires {
                " Callers always set `more`: send all replies but the last with `replies`, then return the last."
            } else {
                " When the caller set `more` (`replies.streaming()`), send all replies but the last with `replies`, then return the last."
            };
            quote! {
                #[doc = ""]
                #[doc = #more]
            }
        };
        let upgrade = match m.upgrade {
            Upgrade::No => quote!(),
            Upgrade::Supports => quote! {
                #[doc = ""]
                #[doc = " Returns the reply and the continuation that takes over the raw connection once the reply is written. The continuation runs only when the caller set `upgrade` (`call.flags.upgrade`); otherwise it is dropped and the connection goes on carrying varlink calls."]
            },
            Upgrade::Requires => quote! {
                #[doc = ""]
                #[doc = " Callers always set `upgrade`: returns the confirming reply and the continuation that takes over the raw connection (socket and any bytes the caller already sent) once the reply is written. The connection carries no varlink messages after it."]
            },
        };
        let (replies, unused) = if m.streaming == Streaming::No {
            (quote!(), quote!((call, input)))
        } else {
            (
                quote!(, replies: ReplySink<'_, #output>),
                quote!((call, input, replies)),
            )
        };
        quote! {
            #doc
            #sink
            #upgrade
            fn #name(&self, call: &::localrpc::service::CallContext, input: #input #replies)
                -> impl ::std::future::Future<Output = #result> + ::std::marker::Send {
                let _ = #unused;
                __localrpc::not_implemented(#qualified)
            }
        }
    });
    let registrations = model.methods.iter().map(|m| {
        let wire = &m.name;
        let handle = ident(&m.ident);
        let requires = if m.streaming == Streaming::Requires {
            quote! { ::localrpc::service::Requires::More }
        } else if m.upgrade == Upgrade::Requires {
            quote! { ::localrpc::service::Requires::Upgrade }
        } else {
            quote! { ::localrpc::service::Requires::Nothing }
        };
        quote! {
            .handler(#wire, __localrpc::Dispatch { service: ::std::sync::Arc::clone(&service), handle: __localrpc::#handle::<S> }, #requires)
        }
    });
    let sink = if model.methods.iter().any(|m| m.streaming != Streaming::No) {
        quote! {
            /// Sends the `continues` replies of a streaming method; the handler's return value
            /// is the final reply.
            pub struct ReplySink<'a, T> {
                replies: ::localrpc::service::Replies<'a>,
                marker: ::std::marker::PhantomData<fn(T)>,
            }

            impl<'a, T: ::serde::Serialize> ReplySink<'a, T> {
                /// Wraps the runtime's untyped replies (the generated dispatch code does this).
                pub fn new(replies: ::localrpc::service::Replies<'a>) -> Self {
                    ReplySink { replies, marker: ::std::marker::PhantomData }
                }

                /// True when the caller set `more`, so [`ReplySink::send`] may be used.
                pub fn streaming(&self) -> bool {
                    self.replies.streaming()
                }

                /// Sends one reply with `"continues": true` and writes it out at once.
                pub async fn send(&mut self, reply: T) -> ::std::result::Result<(), ::localrpc::service::ReplyError> {
                    self.replies.send(reply).await
                }
            }
        }
    } else {
        quote!()
    };
    let builder = if model.methods.is_empty() {
        quote!(::localrpc::service::InterfaceBuilder::new(
            INTERFACE_DESCRIPTION
        ))
    } else {
        quote! {
            ::std::result::Result::Ok(
                ::localrpc::service::InterfaceBuilder::new(INTERFACE_DESCRIPTION)?
                    #(#registrations)*
            )
        }
    };
    // An interface without methods (only types and errors) never uses the service.
    let service_param = if model.methods.is_empty() {
        format_ident!("_service")
    } else {
        format_ident!("service")
    };
    quote! {
        #[doc = #trait_doc]
        #[doc = ""]
        #[doc = #trait_defaults]
        pub trait Service: ::std::marker::Send + ::std::marker::Sync + 'static {
            #(#methods)*
        }

        #sink

        /// The interface, ready for `localrpc::service::ServiceBuilder::interface`: its IDL
        /// (served verbatim) and one handler per method, each calling `service`. Methods marked
        /// `[Requires 'more' flag]` answer `ExpectedMore` to calls without `more`, methods
        /// marked `[Requires 'upgrade' flag]` `ExpectedUpgrade` to calls without `upgrade`.
        pub fn interface<S: Service>(
            #service_param: ::std::sync::Arc<S>,
        ) -> ::std::result::Result<::localrpc::service::InterfaceBuilder, ::localrpc::service::BuildError> {
            #builder
        }
    }
}

fn server_handler(m: &MethodModel) -> TokenStream {
    let name = ident(&m.ident);
    let input = ident(&m.input);
    // The input was checked against the IDL before the handler runs; decoding it is one
    // pass over the parameters' JSON text, straight into the input struct.
    let decode = if m.input_fields.is_empty() {
        quote!(let input = super::#input {};)
    } else {
        quote!(let input: super::#input = call.decode()?;)
    };
    let replies = if m.streaming == Streaming::No {
        quote!()
    } else {
        quote!(, super::ReplySink::new(call.replies))
    };
    // A plain method writes its reply straight into the connection's output; a streaming one
    // gave its `Replies` to the sink, so it returns the reply for the dispatcher to write.
    let plain = m.upgrade == Upgrade::No && m.streaming == Streaming::No;
    let reply = if plain {
        quote! {
            ::std::result::Result::Ok(output) => call.reply(&output),
        }
    } else if m.upgrade == Upgrade::No {
        quote! {
            ::std::result::Result::Ok(output) => ::localrpc::service::Reply::with(output),
        }
    } else {
        quote! {
            ::std::result::Result::Ok((output, handler)) => ::localrpc::service::Reply::upgrade(output, handler),
        }
    };
    let call = if plain || !m.input_fields.is_empty() {
        quote!(mut call)
    } else {
        quote!(call)
    };
    quote! {
        pub(super) fn #name<'a, S: super::Service>(
            service: &'a S,
            #call: ::localrpc::service::Call<'a>,
        ) -> ::localrpc::service::HandlerFuture<'a> {
            ::localrpc::service::HandlerFuture::new(async move {
                #decode
                match service.#name(call.context, input #replies).await {
                    #reply
                    ::std::result::Result::Err(error) => ::std::result::Result::Err(error.into_reply()),
                }
            })
        }
    }
}

fn client_tokens(model: &InterfaceModel) -> TokenStream {
    let interface = &model.name;
    let client_doc = format!(
        " A typed client of `{interface}` on a connection it owns (`Client::connect`) or \
         borrows (`Client::new(&mut connection)`)."
    );
    let mut client_methods = Vec::new();
    let mut batch_methods = Vec::new();
    let mut upgrade_methods = Vec::new();
    for m in &model.methods {
        let qualified = format!("{interface}.{}", m.name);
        let doc = doc_or(&m.doc, &format!("Calls `{qualified}`."));
        let base = crate::names::unraw(&m.ident).to_owned();
        let input = ident(&m.input);
        let output = ident(&m.output);
        let args: Vec<TokenStream> = m
            .input_fields
            .iter()
            .map(|f| {
                let name = ident(&f.ident);
                let ty = type_tokens(&f.ty);
                quote!(#name: #ty)
            })
            .collect();
        let names: Vec<Ident> = m.input_fields.iter().map(|f| ident(&f.ident)).collect();
        let allow = if args.len() > 6 {
            quote!(#[allow(clippy::too_many_arguments)])
        } else {
            quote!()
        };
        let value = quote!(#input { #(#names),* });
        let plain = |fn_name: &Ident| {
            quote! {
                #doc
                #allow
                pub async fn #fn_name(&mut self, #(#args),*) -> ::std::result::Result<#output, ::localrpc::client::CallError<Error>> {
                    let reply = ::std::borrow::BorrowMut::borrow_mut(&mut self.connection).call(#qualified, #value).await;
                    ::localrpc::client::decode_reply(#qualified, reply)
                }
            }
        };
        let more = |fn_name: Ident| {
            quote! {
                #doc
                #[doc = ""]
                #[doc = " Called with `more`: yields every reply, the last one included."]
                #allow
                pub async fn #fn_name(&mut self, #(#args),*) -> ::std::result::Result<::localrpc::client::TypedReplyStream<'_, #output, Error>, ::localrpc::client::CallError<Error>> {
                    ::localrpc::client::TypedReplyStream::call(::std::borrow::BorrowMut::borrow_mut(&mut self.connection), #qualified, #value).await
                }
            }
        };
        let name = ident(&m.ident);
        let upgrade = |fn_name: Ident| {
            quote! {
                #doc
                #[doc = ""]
                #[doc = " Called with `upgrade`: consumes the client and its connection and returns the confirming reply and the raw byte stream the connection became (bytes the service sent right after its reply included). Only a client that owns its connection can upgrade it."]
                #allow
                pub async fn #fn_name(self, #(#args),*) -> ::std::result::Result<(#output, ::localrpc::transport::UpgradedStream), ::localrpc::client::CallError<Error>> {
                    let (parameters, stream) = self.connection.upgrade(#qualified, #value).await
                        .map_err(::localrpc::client::CallError::from_client_error)?;
                    let output = ::localrpc::client::decode_reply(#qualified, ::std::result::Result::Ok(parameters))?;
                    ::std::result::Result::Ok((output, stream))
                }
            }
        };
        match (m.streaming, m.upgrade) {
            (_, Upgrade::Requires) => upgrade_methods.push(upgrade(name.clone())),
            (_, Upgrade::Supports) => {
                client_methods.push(plain(&name));
                upgrade_methods.push(upgrade(format_ident!("{base}_upgrade")));
            }
            (Streaming::No, Upgrade::No) => client_methods.push(plain(&name)),
            (Streaming::Supports, Upgrade::No) => {
                client_methods.push(plain(&name));
                client_methods.push(more(format_ident!("{base}_more")));
            }
            (Streaming::Requires, Upgrade::No) => client_methods.push(more(name.clone())),
        }
        // A method that requires `upgrade` does nothing without it: no oneway or batched call.
        if m.upgrade == Upgrade::Requires {
            continue;
        }
        let oneway_name = format_ident!("{base}_oneway");
        let oneway_doc =
            format!(" Calls `{qualified}` as `oneway`: no reply comes, not even an error.");
        client_methods.push(quote! {
            #[doc = #oneway_doc]
            #allow
            pub async fn #oneway_name(&mut self, #(#args),*) -> ::std::result::Result<(), ::localrpc::client::Error> {
                ::std::borrow::BorrowMut::borrow_mut(&mut self.connection).oneway(#qualified, #value).await
            }
        });
        if m.streaming != Streaming::Requires {
            let queue_doc = format!(" Queues a call of `{qualified}`.");
            batch_methods.push(quote! {
                #[doc = #queue_doc]
                #allow
                pub fn #name(&mut self, #(#args),*) -> ::localrpc::client::Pending<#output> {
                    self.inner.call(#qualified, #value)
                }
            });
        }
        let queue_oneway_doc =
            format!(" Queues a `oneway` call of `{qualified}` (it gets no reply).");
        batch_methods.push(quote! {
            #[doc = #queue_oneway_doc]
            #allow
            pub fn #oneway_name(&mut self, #(#args),*) {
                self.inner.oneway(#qualified, #value)
            }
        });
    }
    quote! {
        #[doc = #client_doc]
        #[derive(::std::fmt::Debug)]
        pub struct Client<C = ::localrpc::client::Connection> {
            connection: C,
        }

        impl Client<::localrpc::client::Connection> {
            /// Connects to `address` (e.g. `unix:/run/x.sock`).
            pub async fn connect(address: &str) -> ::std::result::Result<Self, ::localrpc::client::Error> {
                ::std::result::Result::Ok(Client { connection: ::localrpc::client::Connection::connect(address).await? })
            }

            #(#upgrade_methods)*
        }

        impl<C: ::std::borrow::BorrowMut<::localrpc::client::Connection>> Client<C> {
            /// A client on an existing connection (owned, or `&mut Connection`).
            pub fn new(connection: C) -> Self {
                Client { connection }
            }

            /// The underlying connection (for calls of other interfaces, timeouts...).
            pub fn connection(&mut self) -> &mut ::localrpc::client::Connection {
                self.connection.borrow_mut()
            }

            /// Gives the connection back.
            pub fn into_inner(self) -> C {
                self.connection
            }

            /// Starts a batch of pipelined calls on this connection.
            pub fn batch(&mut self) -> Batch<'_> {
                Batch { inner: ::localrpc::client::Batch::new(self.connection.borrow_mut()) }
            }

            #(#client_methods)*
        }

        /// Typed calls of this interface pipelined on one connection: queue calls (each
        /// returns a [`::localrpc::client::Pending`] ticket), [`Batch::run`] writes them at
        /// once and reads the replies, and `BatchReplies::take(ticket)` gives each typed result.
        /// Methods that require `more` or `upgrade` cannot be batched.
        #[derive(::std::fmt::Debug)]
        pub struct Batch<'c> {
            inner: ::localrpc::client::Batch<'c, Error>,
        }

        impl Batch<'_> {
            #(#batch_methods)*

            /// Writes every queued call at once and reads the replies in order.
            pub async fn run(self) -> ::std::result::Result<::localrpc::client::BatchReplies<Error>, ::localrpc::client::Error> {
                self.inner.run().await
            }
        }
    }
}

/// The private module with serde adapters and dispatch glue (`__localrpc`).
fn support_tokens(model: &InterfaceModel, parts: Parts) -> TokenStream {
    let set = if model.uses(Adapter::Set) || model.uses(Adapter::OptionSet) {
        set_module(model.uses(Adapter::Set))
    } else {
        quote!()
    };
    let option_set = if model.uses(Adapter::OptionSet) {
        option_set_module()
    } else {
        quote!()
    };
    let server = if parts.server && !model.methods.is_empty() {
        let other = ident(&model.other_error);
        let handlers = model.methods.iter().map(server_handler);
        quote! {
            /// One method of a [`super::Service`] as a runtime handler.
            pub(super) struct Dispatch<S> {
                pub(super) service: ::std::sync::Arc<S>,
                pub(super) handle: for<'a> fn(&'a S, ::localrpc::service::Call<'a>)
                    -> ::localrpc::service::HandlerFuture<'a>,
            }

            impl<S: super::Service> ::localrpc::service::MethodHandler for Dispatch<S> {
                fn call<'a>(&'a self, call: ::localrpc::service::Call<'a>)
                    -> ::localrpc::service::HandlerFuture<'a> {
                    (self.handle)(&self.service, call)
                }
            }

            /// What a method of [`super::Service`] answers unless the implementation
            /// overrides it: `org.varlink.service.MethodNotImplemented`.
            pub(super) fn not_implemented<T>(method: &str)
                -> ::std::future::Ready<::std::result::Result<T, super::Error>> {
                ::std::future::ready(::std::result::Result::Err(super::Error::#other(
                    ::localrpc::service::ErrorReply::method_not_implemented(method),
                )))
            }

            #(#handlers)*
        }
    } else {
        quote!()
    };
    if set.is_empty() && option_set.is_empty() && server.is_empty() {
        return quote!();
    }
    quote! {
        /// Support code for the items above: serde adapters and dispatch glue.
        mod __localrpc {
            #set
            #option_set
            #server
        }
    }
}

/// `BTreeSet<String>` as a varlink set; `deserialize` only when a plain set field uses it.
fn set_module(deserialize: bool) -> TokenStream {
    let deserialize = if deserialize {
        quote! {
            pub(crate) fn deserialize<'de, D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<::std::collections::BTreeSet<::std::string::String>, D::Error> {
                let map: ::std::collections::BTreeMap<::std::string::String, ::serde::de::IgnoredAny> =
                    ::serde::Deserialize::deserialize(deserializer)?;
                ::std::result::Result::Ok(map.into_keys().collect())
            }
        }
    } else {
        quote!()
    };
    quote! {
        /// `BTreeSet<String>` as a varlink set: `{"key": {}}`.
        pub(super) mod set {
            pub(crate) fn serialize<S: ::serde::Serializer>(
                set: &::std::collections::BTreeSet<::std::string::String>,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.collect_map(set.iter().map(|key| (key, ::serde_json::Map::new())))
            }

            #deserialize
        }
    }
}

/// `Option<BTreeSet<String>>` as an optional varlink set.
fn option_set_module() -> TokenStream {
    quote! {
        /// `Option<BTreeSet<String>>` as an optional varlink set.
        pub(super) mod option_set {
            pub(crate) fn serialize<S: ::serde::Serializer>(
                set: &::std::option::Option<::std::collections::BTreeSet<::std::string::String>>,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                match set {
                    ::std::option::Option::Some(set) => super::set::serialize(set, serializer),
                    ::std::option::Option::None => serializer.serialize_none(),
                }
            }

            pub(crate) fn deserialize<'de, D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<::std::option::Option<::std::collections::BTreeSet<::std::string::String>>, D::Error> {
                let map: ::std::option::Option<::std::collections::BTreeMap<::std::string::String, ::serde::de::IgnoredAny>> =
                    ::serde::Deserialize::deserialize(deserializer)?;
                ::std::result::Result::Ok(map.map(|map| map.into_keys().collect()))
            }
        }
    }
}
