//! Protocol names of the EWS provider: SOAP and EWS namespaces, SOAPAction values, element and
//! attribute names, field URIs, distinguished folder ids and response codes, each with the
//! Microsoft Open Specifications document (MS-OXWS*, MS-OXDSCLI) that defines it. No other file
//! in `providers/ews/` spells one.

/// SOAP 1.1 envelope namespace (SOAP 1.1 §4; MS-OXWSCDATA §2.2).
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// EWS types namespace, prefix `t` (MS-OXWSCDATA §2.1).
pub const NS_TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
/// EWS messages namespace, prefix `m` (MS-OXWSCDATA §2.1).
pub const NS_MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// EWS SOAP fault detail namespace (MS-OXWSCDATA §2.2.5.x, `ResponseCode` in a fault).
pub const NS_ERRORS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";
/// POX Autodiscover request schema (MS-OXDSCLI §2.2.3).
pub const NS_AUTODISCOVER_REQUEST: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
/// POX Autodiscover response wrapper schema (MS-OXDSCLI §2.2.4).
pub const NS_AUTODISCOVER_RESPONSE: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
/// POX Autodiscover Outlook response schema (MS-OXDSCLI §2.2.4).
pub const NS_AUTODISCOVER_OUTLOOK: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
/// The response schema a POX request asks for (MS-OXDSCLI §2.2.3.1 `AcceptableResponseSchema`).
pub const AUTODISCOVER_ACCEPTABLE_SCHEMA: &str = NS_AUTODISCOVER_OUTLOOK;

/// `RequestServerVersion Version` we send (MS-OXWSCDATA §2.2.3.x `ExchangeVersionType`).
pub const SERVER_VERSION: &str = "Exchange2013";
/// SOAP 1.1 content type (SOAP 1.1 §6.1.1).
pub const CONTENT_TYPE_SOAP: &str = "text/xml; charset=utf-8";
/// SOAP 1.1 `SOAPAction` header (SOAP 1.1 §6.1.1).
pub const HEADER_SOAP_ACTION: &str = "soapaction";
/// `X-AnchorMailbox`, routing hint for the target mailbox
/// (how-to-authenticate-an-ews-application-by-using-oauth).
pub const HEADER_ANCHOR_MAILBOX: &str = "x-anchormailbox";
/// SOAP Autodiscover namespace (MS-OXWSADISC §2.2.x).
pub const NS_AUTODISCOVER_SOAP: &str = "http://schemas.microsoft.com/exchange/2010/Autodiscover";
/// WS-Addressing namespace, for the SOAP Autodiscover `Action`/`To` headers (MS-OXWSADISC).
pub const NS_WS_ADDRESSING: &str = "http://www.w3.org/2005/08/addressing";
/// SOAPAction and `wsa:Action` of GetUserSettings (MS-OXWSADISC §3.1.4.x).
pub const GET_USER_SETTINGS_ACTION: &str =
    "http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings";
/// The SOAP Autodiscover path (MS-OXWSADISC §3.1.x).
pub const AUTODISCOVER_SVC_PATH: &str = "/autodiscover/autodiscover.svc";
/// The EWS endpoint path under a server (providers.md §4).
pub const EWS_PATH: &str = "/EWS/Exchange.asmx";
/// The POX Autodiscover path (MS-OXDSCLI §3.1.5).
pub const AUTODISCOVER_XML_PATH: &str = "/autodiscover/autodiscover.xml";

/// EWS operations, each the local name of the request element in [`NS_MESSAGES`]; the SOAPAction
/// is [`NS_MESSAGES`] + `/` + the operation.
pub mod op {
    /// MS-OXWSFOLD §3.1.4.6.
    pub const FIND_FOLDER: &str = "FindFolder";
    /// MS-OXWSFOLD §3.1.4.7.
    pub const GET_FOLDER: &str = "GetFolder";
    /// MS-OXWSSYNC §3.1.4.2.
    pub const SYNC_FOLDER_ITEMS: &str = "SyncFolderItems";
    /// MS-OXWSCORE §3.1.4.4.
    pub const GET_ITEM: &str = "GetItem";
    /// MS-OXWSCORE §3.1.4.2.
    pub const CREATE_ITEM: &str = "CreateItem";
    /// MS-OXWSCORE §3.1.4.9.
    pub const UPDATE_ITEM: &str = "UpdateItem";
    /// MS-OXWSCORE §3.1.4.3.
    pub const DELETE_ITEM: &str = "DeleteItem";
    /// MS-OXWSATT §3.1.4.3: read attachments (a contact photo's bytes).
    pub const GET_ATTACHMENT: &str = "GetAttachment";
    /// MS-OXWSATT §3.1.4.1: add an attachment to an item (a contact photo).
    pub const CREATE_ATTACHMENT: &str = "CreateAttachment";
    /// MS-OXWSATT §3.1.4.2: remove an attachment.
    pub const DELETE_ATTACHMENT: &str = "DeleteAttachment";
}

/// The file name Outlook gives a contact photo attachment (MS-OXOCNTC §2.2.1.8).
pub const CONTACT_PHOTO_NAME: &str = "ContactPicture.jpg";
/// The `AdditionalProperties` field of an item's attachments (MS-OXWSCORE `item:Attachments`).
pub const FIELD_ITEM_ATTACHMENTS: &str = "item:Attachments";

/// Element local names (namespace noted per group).
pub mod el {
    /// SOAP `Envelope` (SOAP 1.1 §4.1).
    pub const ENVELOPE: &str = "Envelope";
    /// SOAP `Body` (SOAP 1.1 §4.3).
    pub const BODY: &str = "Body";
    /// SOAP `Fault` (SOAP 1.1 §4.4).
    pub const FAULT: &str = "Fault";
    /// SOAP fault child (unqualified), SOAP 1.1 §4.4.
    pub const FAULTCODE: &str = "faultcode";
    /// SOAP fault child (unqualified), SOAP 1.1 §4.4.
    pub const FAULTSTRING: &str = "faultstring";
    /// SOAP fault child (unqualified), SOAP 1.1 §4.4.
    pub const DETAIL: &str = "detail";

    /// `m:ResponseMessages` (MS-OXWSCDATA §2.2.4.x `ArrayOfResponseMessagesType`).
    pub const RESPONSE_MESSAGES: &str = "ResponseMessages";
    /// `m:ResponseCode` (MS-OXWSCDATA §2.2.4.x `ResponseMessageType`).
    pub const RESPONSE_CODE: &str = "ResponseCode";
    /// `m:MessageText`.
    pub const MESSAGE_TEXT: &str = "MessageText";
    /// `m:MessageXml` (carries `t:Value Name="BackOffMilliseconds"`).
    pub const MESSAGE_XML: &str = "MessageXml";
    /// `t:Value` inside `MessageXml`.
    pub const VALUE: &str = "Value";
    /// `e:Message` in a fault detail.
    pub const MESSAGE: &str = "Message";

    /// `m:SyncState` (MS-OXWSSYNC §3.1.4.2.3.x).
    pub const SYNC_STATE: &str = "SyncState";
    /// `m:IncludesLastItemInRange` (MS-OXWSSYNC §3.1.4.2.3.x).
    pub const INCLUDES_LAST_ITEM_IN_RANGE: &str = "IncludesLastItemInRange";
    /// `m:Changes` (MS-OXWSSYNC `SyncFolderItemsChangesType`).
    pub const CHANGES: &str = "Changes";
    /// `t:Create`.
    pub const CREATE: &str = "Create";
    /// `t:Update`.
    pub const UPDATE: &str = "Update";
    /// `t:Delete`.
    pub const DELETE: &str = "Delete";
    /// `t:ReadFlagChange` (mail only; ignored).
    pub const READ_FLAG_CHANGE: &str = "ReadFlagChange";
    /// `m:Items` (MS-OXWSCORE).
    pub const ITEMS: &str = "Items";
    /// `t:ItemId` with `Id` and `ChangeKey` (MS-OXWSCORE §2.2.4.x `ItemIdType`).
    pub const ITEM_ID: &str = "ItemId";
    /// `m:Folders`, `t:Folders`.
    pub const FOLDERS: &str = "Folders";
    /// `m:RootFolder` of FindFolder (MS-OXWSFOLD).
    pub const ROOT_FOLDER: &str = "RootFolder";
    /// `t:ContactsFolder` (MS-OXWSFOLD `ContactsFolderType`).
    pub const CONTACTS_FOLDER: &str = "ContactsFolder";
    /// `t:Folder`.
    pub const FOLDER: &str = "Folder";
    /// `t:FolderId`.
    pub const FOLDER_ID: &str = "FolderId";
    /// `t:ParentFolderId`.
    pub const PARENT_FOLDER_ID: &str = "ParentFolderId";
    /// `t:FolderClass`.
    pub const FOLDER_CLASS: &str = "FolderClass";
    /// `t:ExtendedProperty` (MS-OXWSXPROP §2.2.4.x).
    pub const EXTENDED_PROPERTY: &str = "ExtendedProperty";
    /// `t:ExtendedFieldURI`.
    pub const EXTENDED_FIELD_URI: &str = "ExtendedFieldURI";
    /// `t:Entry` of an indexed dictionary.
    pub const ENTRY: &str = "Entry";
    /// `t:String` inside `Categories`.
    pub const STRING: &str = "String";

    /// `t:Contact` (MS-OXWSCONT §2.2.4.3 `ContactItemType`) and its children.
    pub const CONTACT: &str = "Contact";
    /// `t:DistributionList` (reported by SyncFolderItems; not a person).
    pub const DISTRIBUTION_LIST: &str = "DistributionList";
    /// `t:Body` (item notes), attribute `BodyType`.
    pub const ITEM_BODY: &str = "Body";
    /// `t:Categories`.
    pub const CATEGORIES: &str = "Categories";
    /// `t:HasPicture`.
    pub const HAS_PICTURE: &str = "HasPicture";
    /// `Attachments` of an item, of a GetAttachment/CreateAttachment message.
    pub const ATTACHMENTS: &str = "Attachments";
    /// `FileAttachment` (MS-OXWSATT `FileAttachmentType`).
    pub const FILE_ATTACHMENT: &str = "FileAttachment";
    /// `AttachmentId`.
    pub const ATTACHMENT_ID: &str = "AttachmentId";
    /// `AttachmentIds` of GetAttachment/DeleteAttachment.
    pub const ATTACHMENT_IDS: &str = "AttachmentIds";
    /// `Name` of an attachment.
    pub const ATTACHMENT_NAME: &str = "Name";
    /// `ContentType` of an attachment.
    pub const CONTENT_TYPE: &str = "ContentType";
    /// `Content` of a file attachment, base64.
    pub const CONTENT: &str = "Content";
    /// `IsContactPhoto` of a file attachment.
    pub const IS_CONTACT_PHOTO: &str = "IsContactPhoto";
    /// `ParentItemId` of CreateAttachment.
    pub const PARENT_ITEM_ID: &str = "ParentItemId";
    /// `RootItemId` of a DeleteAttachment message.
    pub const ROOT_ITEM_ID: &str = "RootItemId";
    /// `t:FileAs`.
    pub const FILE_AS: &str = "FileAs";
    /// `t:DisplayName`.
    pub const DISPLAY_NAME: &str = "DisplayName";
    /// `t:GivenName`.
    pub const GIVEN_NAME: &str = "GivenName";
    /// `t:MiddleName`.
    pub const MIDDLE_NAME: &str = "MiddleName";
    /// `t:Nickname`.
    pub const NICKNAME: &str = "Nickname";
    /// `t:CompleteName` (read-only).
    pub const COMPLETE_NAME: &str = "CompleteName";
    /// `t:Title` inside `CompleteName` (honorific).
    pub const TITLE: &str = "Title";
    /// `t:CompanyName`.
    pub const COMPANY_NAME: &str = "CompanyName";
    /// `t:EmailAddresses`.
    pub const EMAIL_ADDRESSES: &str = "EmailAddresses";
    /// `t:PhysicalAddresses`.
    pub const PHYSICAL_ADDRESSES: &str = "PhysicalAddresses";
    /// `t:PhoneNumbers`.
    pub const PHONE_NUMBERS: &str = "PhoneNumbers";
    /// `t:Birthday`.
    pub const BIRTHDAY: &str = "Birthday";
    /// `t:BusinessHomePage`.
    pub const BUSINESS_HOME_PAGE: &str = "BusinessHomePage";
    /// `t:Department`.
    pub const DEPARTMENT: &str = "Department";
    /// `t:Generation`.
    pub const GENERATION: &str = "Generation";
    /// `t:ImAddresses`.
    pub const IM_ADDRESSES: &str = "ImAddresses";
    /// `t:JobTitle`.
    pub const JOB_TITLE: &str = "JobTitle";
    /// `t:Surname`.
    pub const SURNAME: &str = "Surname";
    /// `t:Street` (address entry).
    pub const STREET: &str = "Street";
    /// `t:City`.
    pub const CITY: &str = "City";
    /// `t:State`.
    pub const STATE: &str = "State";
    /// `t:CountryOrRegion`.
    pub const COUNTRY_OR_REGION: &str = "CountryOrRegion";
    /// `t:PostalCode`.
    pub const POSTAL_CODE: &str = "PostalCode";

    /// POX Autodiscover `Autodiscover` root (MS-OXDSCLI §2.2.4).
    pub const AUTODISCOVER: &str = "Autodiscover";
    /// POX `Response`.
    pub const AD_RESPONSE: &str = "Response";
    /// POX `Account`.
    pub const AD_ACCOUNT: &str = "Account";
    /// POX `Action` (`settings`, `redirectAddr`, `redirectUrl`).
    pub const AD_ACTION: &str = "Action";
    /// POX `RedirectAddr`.
    pub const AD_REDIRECT_ADDR: &str = "RedirectAddr";
    /// POX `RedirectUrl`.
    pub const AD_REDIRECT_URL: &str = "RedirectUrl";
    /// POX `Protocol`.
    pub const AD_PROTOCOL: &str = "Protocol";
    /// POX `Type` (`EXCH` internal, `EXPR` external).
    pub const AD_TYPE: &str = "Type";
    /// POX `EwsUrl`.
    pub const AD_EWS_URL: &str = "EwsUrl";
    /// POX `Error`.
    pub const AD_ERROR: &str = "Error";
    /// POX `ErrorCode`.
    pub const AD_ERROR_CODE: &str = "ErrorCode";
    /// POX `Message`.
    pub const AD_MESSAGE: &str = "Message";
}

/// Attribute names.
pub mod attr {
    /// `ResponseClass` (`Success`, `Warning`, `Error`) on every response message.
    pub const RESPONSE_CLASS: &str = "ResponseClass";
    /// `Id` of an item or folder id.
    pub const ID: &str = "Id";
    /// `ChangeKey` of an item or folder id.
    pub const CHANGE_KEY: &str = "ChangeKey";
    /// `Key` of an indexed entry.
    pub const KEY: &str = "Key";
    /// `Name` of a `MessageXml` value.
    pub const NAME: &str = "Name";
    /// `BodyType` (`Text`, `HTML`).
    pub const BODY_TYPE: &str = "BodyType";
    /// `PropertySetId` of an extended field URI.
    pub const PROPERTY_SET_ID: &str = "PropertySetId";
    /// `PropertyName` of an extended field URI.
    pub const PROPERTY_NAME: &str = "PropertyName";
    /// `IncludesLastItemInRange` on FindFolder's `RootFolder`.
    pub const INCLUDES_LAST_ITEM_IN_RANGE: &str = "IncludesLastItemInRange";
    /// `IndexedPagingOffset` on FindFolder's `RootFolder`.
    pub const INDEXED_PAGING_OFFSET: &str = "IndexedPagingOffset";
    /// `RootItemId` on an `AttachmentId` / `RootItemId` (the item the attachment belongs to).
    pub const ROOT_ITEM_ID: &str = "RootItemId";
    /// `RootItemChangeKey`: the item's ChangeKey after the attachment change.
    pub const ROOT_ITEM_CHANGE_KEY: &str = "RootItemChangeKey";
}

/// `ResponseClass` values (MS-OXWSCDATA `ResponseClassType`).
pub mod class {
    /// Success.
    pub const SUCCESS: &str = "Success";
    /// Warning (treated as success with a log line).
    pub const WARNING: &str = "Warning";
    /// Error.
    pub const ERROR: &str = "Error";
}

/// `ResponseCode` values (MS-OXWSCDATA §2.2.5.24 `ResponseCodeType`).
pub mod code {
    /// Success.
    pub const NO_ERROR: &str = "NoError";
    /// The SyncState blob is corrupt or expired: resync without one (providers.md §4).
    pub const INVALID_SYNC_STATE_DATA: &str = "ErrorInvalidSyncStateData";
    /// The sync folder no longer exists.
    pub const SYNC_FOLDER_NOT_FOUND: &str = "ErrorSyncFolderNotFound";
    /// Throttled; `MessageXml` carries `BackOffMilliseconds`.
    pub const SERVER_BUSY: &str = "ErrorServerBusy";
    /// Too many concurrent connections (`EWSMaxConcurrency`).
    pub const EXCEEDED_CONNECTION_COUNT: &str = "ErrorExceededConnectionCount";
    /// Internal error; may wrap an `ErrorServerBusy`.
    pub const INTERNAL_SERVER_ERROR: &str = "ErrorInternalServerError";
    /// A write with a stale ChangeKey under `NeverOverwrite`.
    pub const IRRESOLVABLE_CONFLICT: &str = "ErrorIrresolvableConflict";
    /// A write against a changed item.
    pub const STALE_OBJECT: &str = "ErrorStaleObject";
    /// A write without the ChangeKey the operation requires.
    pub const CHANGE_KEY_REQUIRED: &str = "ErrorChangeKeyRequiredForWriteOperations";
    /// The ChangeKey is malformed.
    pub const INVALID_CHANGE_KEY: &str = "ErrorInvalidChangeKey";
    /// The item does not exist.
    pub const ITEM_NOT_FOUND: &str = "ErrorItemNotFound";
    /// The folder does not exist.
    pub const FOLDER_NOT_FOUND: &str = "ErrorFolderNotFound";
    /// The caller may not access the object.
    pub const ACCESS_DENIED: &str = "ErrorAccessDenied";
}

/// The `MessageXml` value name carrying the throttling back-off (providers.md §4).
pub const BACK_OFF_MILLISECONDS: &str = "BackOffMilliseconds";
/// The folder class of a user contact folder (MS-OXOCNTC §2.2.1.x; providers.md §4).
pub const FOLDER_CLASS_CONTACT: &str = "IPF.Contact";
/// Distinguished folder id of the default Contacts folder (MS-OXWSCDATA
/// `DistinguishedFolderIdNameType`).
pub const DISTINGUISHED_CONTACTS: &str = "contacts";
/// `SyncScope` value (MS-OXWSSYNC `SyncFolderItemsScopeType`).
pub const SYNC_SCOPE_NORMAL_ITEMS: &str = "NormalItems";
/// Largest `MaxChangesReturned` the server accepts (MS-OXWSSYNC; providers.md §4).
pub const MAX_CHANGES_RETURNED_LIMIT: u32 = 512;
/// Largest page of a FindFolder view (`EWSFindCountLimit`, providers.md §4).
pub const FIND_COUNT_LIMIT: u32 = 1000;

/// Field URIs (MS-OXWSCDATA `UnindexedFieldURIType` / `DictionaryURIType`).
pub mod field {
    /// `item:Body`.
    pub const ITEM_BODY: &str = "item:Body";
    /// `item:Categories`.
    pub const ITEM_CATEGORIES: &str = "item:Categories";
    /// `contacts:DisplayName`.
    pub const DISPLAY_NAME: &str = "contacts:DisplayName";
    /// `contacts:FileAs`.
    pub const FILE_AS: &str = "contacts:FileAs";
    /// `contacts:GivenName`.
    pub const GIVEN_NAME: &str = "contacts:GivenName";
    /// `contacts:MiddleName`.
    pub const MIDDLE_NAME: &str = "contacts:MiddleName";
    /// `contacts:Nickname`.
    pub const NICKNAME: &str = "contacts:Nickname";
    /// `contacts:CompanyName`.
    pub const COMPANY_NAME: &str = "contacts:CompanyName";
    /// `contacts:Birthday`.
    pub const BIRTHDAY: &str = "contacts:Birthday";
    /// `contacts:BusinessHomePage`.
    pub const BUSINESS_HOME_PAGE: &str = "contacts:BusinessHomePage";
    /// `contacts:Department`.
    pub const DEPARTMENT: &str = "contacts:Department";
    /// `contacts:Generation`.
    pub const GENERATION: &str = "contacts:Generation";
    /// `contacts:JobTitle`.
    pub const JOB_TITLE: &str = "contacts:JobTitle";
    /// `contacts:Surname`.
    pub const SURNAME: &str = "contacts:Surname";
    /// Indexed `contacts:EmailAddress` (`FieldIndex` = `EmailAddress1..3`).
    pub const EMAIL_ADDRESS: &str = "contacts:EmailAddress";
    /// Indexed `contacts:PhoneNumber` (`FieldIndex` = a phone key).
    pub const PHONE_NUMBER: &str = "contacts:PhoneNumber";
    /// Indexed `contacts:ImAddress` (`FieldIndex` = `ImAddress1..3`).
    pub const IM_ADDRESS: &str = "contacts:ImAddress";
    /// Indexed `contacts:PhysicalAddress:Street` (`FieldIndex` = `Business|Home|Other`).
    pub const ADDRESS_STREET: &str = "contacts:PhysicalAddress:Street";
    /// Indexed `contacts:PhysicalAddress:City`.
    pub const ADDRESS_CITY: &str = "contacts:PhysicalAddress:City";
    /// Indexed `contacts:PhysicalAddress:State`.
    pub const ADDRESS_STATE: &str = "contacts:PhysicalAddress:State";
    /// Indexed `contacts:PhysicalAddress:CountryOrRegion`.
    pub const ADDRESS_COUNTRY: &str = "contacts:PhysicalAddress:CountryOrRegion";
    /// Indexed `contacts:PhysicalAddress:PostalCode`.
    pub const ADDRESS_POSTAL_CODE: &str = "contacts:PhysicalAddress:PostalCode";
}

/// `EmailAddresses` keys (MS-OXWSCONT `EmailAddressKeyType`).
pub const EMAIL_KEYS: [&str; 3] = ["EmailAddress1", "EmailAddress2", "EmailAddress3"];
/// `ImAddresses` keys (MS-OXWSCONT `ImAddressKeyType`).
pub const IM_KEYS: [&str; 3] = ["ImAddress1", "ImAddress2", "ImAddress3"];
/// `PhysicalAddresses` keys (MS-OXWSCONT `PhysicalAddressKeyType`).
pub const ADDRESS_KEYS: [&str; 3] = ["Business", "Home", "Other"];

/// `PhoneNumbers` keys (MS-OXWSCONT `PhoneNumberKeyType`).
pub mod phone {
    /// AssistantPhone.
    pub const ASSISTANT: &str = "AssistantPhone";
    /// BusinessFax.
    pub const BUSINESS_FAX: &str = "BusinessFax";
    /// BusinessPhone.
    pub const BUSINESS: &str = "BusinessPhone";
    /// BusinessPhone2.
    pub const BUSINESS2: &str = "BusinessPhone2";
    /// Callback.
    pub const CALLBACK: &str = "Callback";
    /// CarPhone.
    pub const CAR: &str = "CarPhone";
    /// CompanyMainPhone.
    pub const COMPANY_MAIN: &str = "CompanyMainPhone";
    /// HomeFax.
    pub const HOME_FAX: &str = "HomeFax";
    /// HomePhone.
    pub const HOME: &str = "HomePhone";
    /// HomePhone2.
    pub const HOME2: &str = "HomePhone2";
    /// Isdn.
    pub const ISDN: &str = "Isdn";
    /// MobilePhone.
    pub const MOBILE: &str = "MobilePhone";
    /// OtherFax.
    pub const OTHER_FAX: &str = "OtherFax";
    /// OtherTelephone.
    pub const OTHER: &str = "OtherTelephone";
    /// Pager.
    pub const PAGER: &str = "Pager";
    /// PrimaryPhone.
    pub const PRIMARY: &str = "PrimaryPhone";
    /// RadioPhone.
    pub const RADIO: &str = "RadioPhone";
    /// Telex.
    pub const TELEX: &str = "Telex";
    /// TtyTddPhone.
    pub const TTY_TDD: &str = "TtyTddPhone";

    /// Every key, in the order the mapping reads them into TEL properties.
    pub const ALL: [&str; 19] = [
        BUSINESS,
        BUSINESS2,
        MOBILE,
        HOME,
        HOME2,
        COMPANY_MAIN,
        PRIMARY,
        BUSINESS_FAX,
        HOME_FAX,
        OTHER_FAX,
        PAGER,
        TTY_TDD,
        OTHER,
        CAR,
        CALLBACK,
        ASSISTANT,
        ISDN,
        RADIO,
        TELEX,
    ];
}

/// Our own named property set holding the CRM id of a contact we created (MS-OXWSXPROP
/// `ExtendedFieldURI` with `PropertySetId`/`PropertyName`/`PropertyType="String"`).
pub const CRM_ID_PROPERTY_SET: &str = "6f1c1b5e-2d8a-4b8e-9a3c-7c2f0c1e4a11";
/// Name of the CRM id property in [`CRM_ID_PROPERTY_SET`].
pub const CRM_ID_PROPERTY_NAME: &str = "cardbridgeCrmId";
